"""One adapter per tool, named after it: the only modules of glue that import the tool.

feast (feature store), mlflow (tracking and registry), dvc (data versions, the pipeline),
airflow (the DAGs' environment and runs), great_expectations (the validation suite).
Each imports its tool inside its functions, so importing an adapter costs nothing until it is
used; when a tool's API changes, one file changes.
"""
