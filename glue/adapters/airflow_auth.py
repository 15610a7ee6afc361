"""The prod profile's Airflow auth manager: the FAB provider's, with approvers named by user name.

Why a subclass: Airflow's human-in-the-loop check (the ``approve`` step of a training DAG, see
dags/glue_training.py) lets a user answer when the user's *id* is among the task's assigned users.
SimpleAuthManager's ids are user names; FAB's are the row numbers of its user table ("1", "2"...),
which a DAG cannot know when it is parsed, while params.yaml ``approval.approvers`` lists user
names, as a team writes them. This manager also accepts a respondent whose user name is assigned;
everything else (users, roles, permissions, the login page, the token API) is FAB's own.

Only Airflow's processes import this module (``AIRFLOW__CORE__AUTH_MANAGER``): it loads FAB.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager


class GlueFabAuthManager(FabAuthManager):
    """FAB's auth manager; a human-in-the-loop task's assigned users may be user names."""

    def is_authorized_hitl_task(self, *, assigned_users: set[str], user: Any) -> bool:
        return (super().is_authorized_hitl_task(assigned_users=assigned_users, user=user)
                or user.get_name() in assigned_users)
