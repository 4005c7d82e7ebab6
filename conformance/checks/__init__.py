"""The checks. One module per area; each check is a pytest test function marked with `check`.

Adding a check is writing one function::

    @check("kueue.admits-when-quota-frees", requirements=["kueue_admission"])
    def test_admits_when_quota_frees(cluster: Cluster, namespace: str, evidence: Evidence) -> None:
        ...

and listing its id under the requirement in `profiles/requirements.yaml`.
"""

from conformance.checks.registry import CheckInfo, check, discover

__all__ = ["CheckInfo", "check", "discover"]
