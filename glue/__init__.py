"""mlops-glue: one closed MLOps loop from DVC, Great Expectations, Feast, MLflow, Evidently and Airflow.

Importing this package is cheap on purpose: every heavy tool is imported inside the function that
needs it, so `glue --help` and DAG parsing stay fast.
"""

__version__ = "0.1.0"
