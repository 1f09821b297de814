package custos.authz_test

import data.custos.authz

# Inputs are built from one request by a workload in customers-readers;
# each test changes what it is about.
base := {
	"principal": {"issuer": "https://idp", "subject": "nightly-etl", "kind": "workload", "groups": ["g-1"], "group_names": ["customers-readers"], "roles": [], "groups_unknown": false},
	"connection": {"name": "customers", "kind": "http", "labels": {}},
	"request": {"method": "GET", "path": "/1"},
	"action": {"kind": "http", "risk": "read", "summary": "GET /1"},
	"grants": [],
}

with_risk(r) := object.union(base, {"action": {"kind": "http", "risk": r, "summary": sprintf("%s on /1", [r])}})

as_groups(gs) := object.union(base, {"principal": object.union(base.principal, {"groups": gs, "group_names": []})})

test_reader_reads if {
	d := authz.decision with input as base
	d.allow == true
	not d.approval
	contains(d.reasons[0], "read access to \"customers\" through customers-readers")
}

test_group_ids_map_too if {
	d := authz.decision with input as as_groups(["customers-readers"])
	d.allow
}

test_reader_cannot_write if {
	d := authz.decision with input as with_risk("write")
	d.allow == false
	contains(d.reasons[0], "has read access to \"customers\"; this write action needs write access")
}

test_writer_writes if {
	d := authz.decision with input as object.union(with_risk("write"), {"principal": object.union(base.principal, {"group_names": ["customers-writers"]})})
	d.allow
	not d.approval
}

test_unmapped_group_is_denied_with_the_groups_to_ask_for if {
	d := authz.decision with input as as_groups(["marketing"])
	d.allow == false
	d.reasons == ["workload \"nightly-etl\" is in no group with access to connection \"customers\"; ask for one of: customers-admins, customers-readers, customers-writers"]
}

test_no_groups_is_denied if {
	d := authz.decision with input as as_groups([])
	d.allow == false
}

test_unmapped_connection_is_denied if {
	d := authz.decision with input as object.union(base, {"connection": {"name": "ledger", "kind": "http", "labels": {}}})
	d.allow == false
	contains(d.reasons[0], "mapped to no group")
}

test_group_overage_is_not_no_groups if {
	d := authz.decision with input as object.union(as_groups([]), {"principal": object.union(base.principal, {"groups": [], "group_names": [], "groups_unknown": true})})
	d.allow == false
	contains(d.reasons[0], "group overage")
}

test_destructive_needs_one_approval_from_the_approvers if {
	d := authz.decision with input as object.union(with_risk("destructive"), {"principal": object.union(base.principal, {"group_names": ["customers-writers"]})})
	d.allow
	d.approval == {"rule": "destructive-needs-approval", "approvers": ["custos-approvers"], "min_approvals": 1, "scope": "request"}
}

test_destructive_needs_write_level_first if {
	d := authz.decision with input as with_risk("destructive")
	d.allow == false
	not d.approval
}

test_admin_needs_admin_level_and_two_approvals if {
	d := authz.decision with input as object.union(with_risk("admin"), {"principal": object.union(base.principal, {"group_names": ["customers-admins"]})})
	d.allow
	d.approval.min_approvals == 2
	d.approval.rule == "admin-needs-approval"
}

test_admin_action_by_a_writer_is_denied if {
	d := authz.decision with input as object.union(with_risk("admin"), {"principal": object.union(base.principal, {"group_names": ["customers-writers"]})})
	d.allow == false
}

test_unknown_risk_needs_approval if {
	d := authz.decision with input as with_risk("unknown")
	d.allow
	d.approval.rule == "unknown-needs-approval"
	d.approval.min_approvals == 1
}

test_a_risk_the_policy_does_not_know_is_denied if {
	d := authz.decision with input as with_risk("catastrophic")
	d.allow == false
}

test_workloads_never_read_kubernetes_secrets if {
	inp := object.union(base, {
		"connection": {"name": "customers", "kind": "kubernetes", "labels": {}},
		"action": {"kind": "kubernetes", "risk": "read", "summary": "get secret db-password", "kubernetes": {"verb": "get", "resource": "secrets"}},
	})
	d := authz.decision with input as inp
	d.allow == false
	contains(d.reasons[0], "workloads never read Kubernetes secrets")
}

test_humans_may_read_kubernetes_secrets_with_access if {
	inp := object.union(base, {
		"principal": object.union(base.principal, {"kind": "human"}),
		"action": {"kind": "kubernetes", "risk": "read", "summary": "get secret db-password", "kubernetes": {"verb": "get", "resource": "secrets"}},
	})
	d := authz.decision with input as inp
	d.allow
}

test_connection_approvers_override_the_default if {
	d := authz.decision with input as with_risk("unknown") with data.custos.config.approvers as {"default": ["a"], "customers": ["dba-oncall"]}
	d.approval.approvers == ["dba-oncall"]
}

test_masking_profile_of_the_connection if {
	d := authz.decision with input as base with data.custos.config.masking as {"customers": "pci"}
	d.mask_profile == "pci"
	denied := authz.decision with input as as_groups([]) with data.custos.config.masking as {"customers": "pci"}
	denied.mask_profile == "pci"
}

test_no_masking_key_without_a_profile if {
	d := authz.decision with input as base
	not d.mask_profile
}

# --- Rules per kind (sql, kubernetes, azure, graphql). Inputs are shaped as
# the inspectors (filters/inspect) produce them. They are in this file, not
# one per kind, so that removing this file leaves no test that reads the
# decision's keys (cmd/custos's policy e2e test swaps in a bare decision).

principal(kind, names) := {"issuer": "https://idp", "subject": "nightly-etl", "kind": kind, "groups": [], "group_names": names, "roles": [], "groups_unknown": false}

# sql on the warehouse connection (data.json: accounts is sensitive).
sql(names, risk, summary, statements) := {
	"principal": principal("workload", names),
	"connection": {"name": "warehouse", "kind": "sql-http", "labels": {}},
	"request": {"method": "POST", "path": "/query"},
	"action": {"kind": "sql", "risk": risk, "summary": summary, "sql": {"dialect": "sqlite", "statements": statements}},
	"grants": [],
}

stmt(kind, tables, risk) := {"kind": kind, "tables": tables, "columns": [], "has_where": false, "risk": risk}

select_accounts(names, table) := sql(names, "read", sprintf("sql (sqlite) on warehouse: SELECT * FROM %s", [table]), [stmt("select", [table], "read")])

test_sql_reader_reads_a_table_that_is_not_sensitive if {
	d := authz.decision with input as sql(["warehouse-readers"], "read", "SELECT name FROM customers", [stmt("select", ["customers"], "read")])
	d.allow
	not d.approval
	d.reasons == ["workload \"nightly-etl\" has read access to \"warehouse\" through warehouse-readers"]
}

test_sql_sensitive_table_needs_write_even_to_read if {
	d := authz.decision with input as select_accounts(["warehouse-readers"], "accounts")
	d.allow == false
	d.reasons == ["workload \"nightly-etl\" has read access to \"warehouse\"; touching sensitive table accounts needs write access; ask for one of: warehouse-admins, warehouse-writers"]
}

test_sql_sensitive_table_matches_without_case_or_schema if {
	every table in ["Accounts", "ACCOUNTS", "main.accounts", "public.Accounts"] {
		d := authz.decision with input as select_accounts(["warehouse-readers"], table)
		d.allow == false
		contains(d.reasons[0], "touching sensitive table accounts")
	}
}

test_sql_sensitive_table_in_any_statement if {
	d := authz.decision with input as sql(["warehouse-readers"], "read", "2 statements", [stmt("select", ["customers"], "read"), stmt("select", ["customers", "accounts"], "read")])
	d.allow == false
}

test_sql_writer_reads_a_sensitive_table if {
	d := authz.decision with input as select_accounts(["warehouse-writers"], "accounts")
	d.allow
	not d.approval
}

test_sql_no_second_reason_when_the_risk_already_needs_write if {
	d := authz.decision with input as sql(["warehouse-readers"], "write", "UPDATE accounts SET balance = 0 WHERE id = 1", [stmt("update", ["accounts"], "write")])
	d.allow == false
	count(d.reasons) == 1
	contains(d.reasons[0], "this write action needs write access; ask for one of: warehouse-admins, warehouse-writers")
}

test_sql_without_sensitive_tables_in_the_data if {
	d := authz.decision with input as select_accounts(["warehouse-readers"], "accounts")
		with data.custos.config as {"access": {"warehouse": {"warehouse-readers": "read"}}, "approvers": {"default": ["custos-approvers"]}, "masking": {}}
	d.allow
}

test_sql_delete_without_where_needs_an_approval if {
	d := authz.decision with input as sql(["warehouse-writers"], "destructive", "DELETE FROM customers [DELETE without WHERE]", [stmt("delete", ["customers"], "destructive")])
	d.allow
	d.approval == {"rule": "destructive-needs-approval", "approvers": ["custos-approvers"], "min_approvals": 1, "scope": "request"}
}

test_sql_stacked_drop_needs_an_approval if {
	d := authz.decision with input as sql(["warehouse-writers"], "destructive", "2 statements, SELECT 1; DROP TABLE customers", [stmt("select", [], "read"), stmt("drop", ["customers"], "destructive")])
	d.allow
	d.approval.rule == "destructive-needs-approval"
}

test_sql_ddl_needs_admin_and_two_approvals if {
	inp := sql(["warehouse-writers"], "admin", "CREATE TABLE t (a)", [stmt("create", ["t"], "admin")])
	denied := authz.decision with input as inp
	denied.allow == false
	contains(denied.reasons[0], "needs admin access; ask for one of: warehouse-admins")
	d := authz.decision with input as object.union(inp, {"principal": principal("workload", ["warehouse-admins"])})
	d.allow
	d.approval.rule == "admin-needs-approval"
	d.approval.min_approvals == 2
}

test_sql_unparsed_needs_an_approval if {
	d := authz.decision with input as sql(["warehouse-readers"], "unknown", "not understood", [])
	d.allow
	d.approval.rule == "unknown-needs-approval"
}

# kubernetes on a "cluster" connection mapped in the test.
cluster := {"cluster": {"ops": "read", "deployers": "write", "sre": "admin"}}

kube(kind, names, risk, k) := {
	"principal": principal(kind, names),
	"connection": {"name": "cluster", "kind": "kubernetes", "labels": {}},
	"request": {"method": "POST", "path": "/api/v1/namespaces/prod/pods/web-1/exec"},
	"action": {"kind": "kubernetes", "risk": risk, "summary": "kubernetes request", "kubernetes": object.union(
		{"verb": "create", "group": "", "resource": "pods", "namespace": "prod", "name": "web-1", "subresource": "", "command": [], "impersonate": ""},
		k,
	)},
	"grants": [],
}

test_kubernetes_exec_needs_an_approval_and_admin if {
	inp := kube("human", ["sre"], "admin", {"subresource": "exec", "command": ["sh"]})
	d := authz.decision with input as inp with data.custos.config.access as cluster
	d.allow
	d.approval.rule == "kubernetes-exec-needs-approval"
	d.approval.min_approvals == 2 # the admin risk's two stay
	denied := authz.decision with input as kube("human", ["deployers"], "admin", {"subresource": "exec"}) with data.custos.config.access as cluster
	denied.allow == false
	not denied.approval
}

test_kubernetes_exec_needs_an_approval_whatever_its_risk if {
	every sub in ["exec", "attach", "portforward"] {
		d := authz.decision with input as kube("human", ["deployers"], "write", {"subresource": sub}) with data.custos.config.access as cluster
		d.allow
		d.approval == {"rule": sprintf("kubernetes-%s-needs-approval", [sub]), "approvers": ["custos-approvers"], "min_approvals": 1, "scope": "request"}
	}
}

test_kubernetes_other_subresources_need_no_approval if {
	d := authz.decision with input as kube("human", ["deployers"], "write", {"subresource": "status"}) with data.custos.config.access as cluster
	d.allow
	not d.approval
}

test_kubernetes_workloads_never_impersonate if {
	d := authz.decision with input as kube("workload", ["sre"], "admin", {"verb": "list", "subresource": "", "impersonate": "system:admin"}) with data.custos.config.access as cluster
	d.allow == false
	d.reasons == ["workloads never impersonate in Kubernetes (as system:admin); give workload \"nightly-etl\" the access it needs under its own name"]
}

test_kubernetes_humans_impersonate_with_admin_and_approvals if {
	d := authz.decision with input as kube("human", ["sre"], "admin", {"verb": "list", "impersonate": "system:admin"}) with data.custos.config.access as cluster
	d.allow
	d.approval.rule == "admin-needs-approval"
	d.approval.min_approvals == 2
}

test_kubernetes_workloads_never_read_secrets_even_as_admin if {
	d := authz.decision with input as kube("workload", ["sre"], "admin", {"verb": "get", "resource": "secrets", "name": "db"}) with data.custos.config.access as cluster
	d.allow == false
	contains(d.reasons[0], "workloads never read Kubernetes secrets")
}

# azure on a "subscription" connection mapped in the test.
subscription := {"subscription": {"azure-readers": "read", "azure-operators": "write", "azure-admins": "admin"}}

arm(names, method, risk, action) := {
	"principal": principal("human", names),
	"connection": {"name": "subscription", "kind": "azure", "labels": {}},
	"request": {"method": method, "path": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa"},
	"action": {"kind": "azure", "risk": risk, "summary": "azure arm", "azure": {
		"service": "arm", "operation": sprintf("Microsoft.Storage/storageAccounts/%s/action", [action]),
		"resource_id": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa",
		"provider": "Microsoft.Storage", "action": action,
	}},
	"grants": [],
}

test_azure_list_keys_needs_two_approvals if {
	d := authz.decision with input as arm(["azure-admins"], "POST", "admin", "listKeys") with data.custos.config.access as subscription
	d.allow
	d.approval == {"rule": "azure-listkeys-needs-approval", "approvers": ["custos-approvers"], "min_approvals": 2, "scope": "request"}
}

test_azure_admin_actions_need_two_approvals if {
	every action in ["regenerateKey", "runCommand", "listClusterAdminCredential"] {
		d := authz.decision with input as arm(["azure-admins"], "POST", "admin", action) with data.custos.config.access as subscription
		d.approval.rule == sprintf("azure-%s-needs-approval", [lower(action)])
		d.approval.min_approvals == 2
	}
}

test_azure_list_actions_need_two_approvals_even_when_read if {
	d := authz.decision with input as arm(["azure-readers"], "POST", "read", "listAccountSas") with data.custos.config.access as subscription
	d.allow
	d.approval.rule == "azure-listaccountsas-needs-approval"
	d.approval.min_approvals == 2
}

test_azure_list_keys_needs_admin_level if {
	d := authz.decision with input as arm(["azure-operators"], "POST", "admin", "listKeys") with data.custos.config.access as subscription
	d.allow == false
	contains(d.reasons[0], "needs admin access; ask for one of: azure-admins")
}

test_azure_reads_writes_and_read_actions_need_no_approval if {
	every c in [["azure-readers", "GET", "read", "read"], ["azure-operators", "PUT", "write", "write"], ["azure-readers", "POST", "read", "checkNameAvailability"]] {
		d := authz.decision with input as arm([c[0]], c[1], c[2], c[3]) with data.custos.config.access as subscription
		d.allow
		not d.approval
	}
}

test_azure_storage_deletes_by_risk if {
	inp := object.union(arm(["azure-operators"], "DELETE", "destructive", "delete"), {"action": {"azure": {"service": "blob", "action": "delete"}}})
	d := authz.decision with input as inp with data.custos.config.access as subscription
	d.approval.rule == "destructive-needs-approval"
}

# graphql on an "api" connection mapped in the test.
api := {"api": {"api-readers": "read", "api-writers": "write"}}

gql(names, risk, ops) := {
	"principal": principal("workload", names),
	"connection": {"name": "api", "kind": "graphql", "labels": {}},
	"request": {"method": "POST", "path": "/graphql"},
	"action": {"kind": "graphql", "risk": risk, "summary": "graphql", "graphql": {"operations": ops}},
	"grants": [],
}

test_graphql_reader_queries if {
	d := authz.decision with input as gql(["api-readers"], "read", [{"type": "query", "fields": ["customer"]}, {"type": "subscription", "fields": ["orders"]}]) with data.custos.config.access as api
	d.allow
	not d.approval
}

test_graphql_mutation_needs_write if {
	d := authz.decision with input as gql(["api-readers"], "write", [{"type": "mutation", "fields": ["createCustomer"]}]) with data.custos.config.access as api
	d.allow == false
	count(d.reasons) == 1
	contains(d.reasons[0], "needs write access; ask for one of: api-writers")
}

test_graphql_mutation_needs_write_whatever_its_risk if {
	d := authz.decision with input as gql(["api-readers"], "read", [{"type": "query", "fields": ["me"]}, {"type": "mutation", "fields": ["updateEmail", "createCustomer"]}]) with data.custos.config.access as api
	d.allow == false
	d.reasons == ["workload \"nightly-etl\" has read access to \"api\"; the GraphQL mutation createCustomer, updateEmail needs write access; ask for one of: api-writers"]
}

test_graphql_writer_mutates_and_deletes_with_an_approval if {
	d := authz.decision with input as gql(["api-writers"], "write", [{"type": "mutation", "fields": ["createCustomer"]}]) with data.custos.config.access as api
	d.allow
	not d.approval
	del := authz.decision with input as gql(["api-writers"], "destructive", [{"type": "mutation", "fields": ["deleteCustomer"]}]) with data.custos.config.access as api
	del.approval.rule == "destructive-needs-approval"
}
