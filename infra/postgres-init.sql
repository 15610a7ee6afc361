-- One database per tool; run once by the postgres image on an empty volume.
CREATE DATABASE mlflow;
CREATE DATABASE feast;
CREATE DATABASE airflow;
CREATE DATABASE glue;
CREATE DATABASE mlflow_auth;
