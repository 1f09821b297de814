# The default policy of Custos: least privilege by group, deny by default.
#
# data.custos.config (custos/config/data.json) says which groups reach which
# connection at which level (read, write or admin), who approves, which
# masking each connection adds, and which SQL tables are sensitive. Reads
# need read, writes need write; destructive, admin and unknown actions also
# need a human's approval from an approver group (two approvals for admin).
# Per kind: statements touching a sensitive table need write even to read;
# GraphQL mutations need write; Kubernetes exec, attach and port-forward
# always need an approval, and workloads never read secrets nor
# impersonate; Azure actions such as listKeys need two approvals. A rule for
# a kind only ever adds to what the risk asks. Every reason is a sentence
# the agent's owner can act on. A reason names what the owner must change
# (groups, levels, connection, tables), never the request itself: the
# audit record holds the request beside its decision, and a decision that
# does not read the request's summary or path is one decision for every
# path, which the decision cache answers without evaluating again.
package custos.authz

cfg := data.custos.config

conn := input.connection.name

risk := input.action.risk

who := sprintf("%s %q", [input.principal.kind, input.principal.subject])

# The connection's group map (data.json may name a group by id or by its
# readable name).
access := object.get(cfg.access, conn, {})

ranks := {"read": 1, "write": 2, "admin": 3}

names := {1: "read", 2: "write", 3: "admin"}

# The level each risk needs.
needs := {"read": 1, "write": 2, "destructive": 2, "unknown": 1, "admin": 3}

# The groups that give the principal access to this connection, and its
# level: the highest of theirs.
# One object, computed once per decision (a partial object would be
# evaluated again inside each comprehension that reads it).
granting := {g: ranks[lv] |
	some g in array.concat(input.principal.groups, group_names)
	lv := access[g]
}

# The principal's group names, when its issuer gives them. Read by path,
# not with object.get(input.principal, ...), so a decision depends on the
# names alone, not on the whole principal (the decision cache keys each
# decision by what it read: `custos policy eval` lists it).
default group_names := []

group_names := input.principal.group_names

default level := 0

level := max([r | some r in granting]) if count(granting) > 0

# The mapped groups of this connection, named in denials so the owner knows
# what to ask for.
mapped := concat(", ", sort(object.keys(access)))

# An action needs an approval by its risk.
approval_risks := {"destructive", "admin", "unknown"}

deny contains msg if {
	level == 0
	not input.principal.groups_unknown
	mapped != ""
	msg := sprintf("%s is in no group with access to connection %q; ask for one of: %s", [who, conn, mapped])
}

deny contains msg if {
	level == 0
	not input.principal.groups_unknown
	mapped == ""
	msg := sprintf("connection %q is mapped to no group in the policy data (custos/config/data.json); nobody may use it", [conn])
}

deny contains msg if {
	level == 0
	input.principal.groups_unknown
	msg := sprintf("the token of %s does not list its groups (too many for the token: group overage), so access to %q cannot be decided; give the workload an app role or fewer groups", [who, conn])
}

# What the action needs, and why: the risk's level, and any higher level a
# rule for the action's kind asks for.
# (The reason is written only for a denial: building it for every request
# costs more than deciding.)
requires_risk := needs[risk]

requires_kind[why] := n if {
	some why, n in kind_requires
	n > object.get(needs, risk, 0)
}

# The groups of the connection with at least level n, for the owner to ask
# for.
ask(n) := sprintf("; ask for one of: %s", [concat(", ", gs)]) if {
	gs := sort([g | some g, lv in access; ranks[lv] >= n])
	count(gs) > 0
} else := ""

deny contains msg if {
	level > 0
	level < requires_risk
	why := sprintf("this %s action", [risk])
	msg := sprintf("%s has %s access to %q; %s needs %s access%s", [who, names[level], conn, why, names[requires_risk], ask(requires_risk)])
}

deny contains msg if {
	level > 0
	some why, n in requires_kind
	level < n
	msg := sprintf("%s has %s access to %q; %s needs %s access%s", [who, names[level], conn, why, names[n], ask(n)])
}

deny contains msg if {
	not needs[risk]
	msg := sprintf("the action's risk %q is not one this policy knows; refused", [risk])
}

deny contains msg if {
	input.principal.kind == "workload"
	input.action.kind == "kubernetes"
	input.action.kubernetes.resource == "secrets"
	msg := sprintf("workloads never read Kubernetes secrets; %s must get them another way", [who])
}

approvers := object.get(cfg.approvers, conn, object.get(cfg.approvers, "default", []))

# The approvals an action asks for, rule name → approvals needed: one for
# its risk, and any a rule for its kind adds.
approvals_asked[sprintf("%s-needs-approval", [risk])] := n if {
	risk in approval_risks
	n := object.get({"admin": 2}, risk, 1)
}

approvals_asked[rule] := n if some rule, n in kind_approvals

# The approval asked for is named after the rule for the kind when there is
# one (what the approver reads), and needs the most approvals any rule
# asks: combining never lowers what the risk needs.
approval_rule := rules[0] if {
	rules := sort(object.keys(kind_approvals))
	count(rules) > 0
} else := sprintf("%s-needs-approval", [risk]) if {
	risk in approval_risks
}

approval := {
	"rule": approval_rule,
	"approvers": approvers,
	"min_approvals": max([n | some n in approvals_asked]),
	"scope": "request",
} if {
	approval_rule
}

# --- Rules per kind (action.kind and its block, CONTRACT.md) ---

# sql: the tables of data.json's sensitive_tables for this connection, and
# those the statements touch. Names compare without case and without a
# schema qualifier (main.Accounts is accounts), so a spelling does not slip
# past; a table named alike in another schema counts too.
sensitive_tables := {bare(t) | some t in object.get(object.get(cfg, "sensitive_tables", {}), conn, [])}

bare(t) := parts[count(parts) - 1] if parts := split(lower(t), ".")

sensitive_touched contains bare(t) if {
	input.action.kind == "sql"
	some st in object.get(input.action, ["sql", "statements"], [])
	some t in object.get(st, "tables", [])
	bare(t) in sensitive_tables
}

kind_requires[why] := 2 if {
	count(sensitive_touched) > 0
	why := sprintf("touching sensitive table %s", [concat(", ", sort(sensitive_touched))])
}

# graphql: a mutation writes, whatever risk it was given.
mutations contains f if {
	input.action.kind == "graphql"
	some op in object.get(input.action, ["graphql", "operations"], [])
	op.type == "mutation"
	some f in object.get(op, "fields", [])
}

kind_requires[why] := 2 if {
	input.action.kind == "graphql"
	some op in object.get(input.action, ["graphql", "operations"], [])
	op.type == "mutation"
	why := sprintf("the GraphQL mutation %s", [concat(", ", sort(mutations))])
}

# kubernetes: a shell in a pod, or a tunnel to it, is never unattended.
kube_interactive := {"exec", "attach", "portforward"}

kind_approvals[sprintf("kubernetes-%s-needs-approval", [sub])] := 1 if {
	input.action.kind == "kubernetes"
	sub := input.action.kubernetes.subresource
	sub in kube_interactive
}

deny contains msg if {
	input.principal.kind == "workload"
	input.action.kind == "kubernetes"
	object.get(input.action.kubernetes, "impersonate", "") != ""
	msg := sprintf("workloads never impersonate in Kubernetes (as %s); give %s the access it needs under its own name", [input.action.kubernetes.impersonate, who])
}

# azure: an ARM action (a POST such as listKeys, regenerateKey,
# listClusterAdminCredential, runCommand) that is admin, or any list* action
# (ARM's convention for actions that return secrets), needs two approvals.
azure_action := lower(input.action.azure.action) if {
	input.action.kind == "azure"
	input.action.azure.service == "arm"
	not input.action.azure.action in {"read", "write", "delete", ""}
}

kind_approvals[sprintf("azure-%s-needs-approval", [azure_action])] := 2 if {
	risk == "admin"
}

kind_approvals[sprintf("azure-%s-needs-approval", [azure_action])] := 2 if {
	startswith(azure_action, "list")
}

masking := {"mask_profile": cfg.masking[conn]} if {
	cfg.masking[conn]
} else := {}

allowed_by := sprintf("%s has %s access to %q through %s", [who, names[level], conn, concat(", ", sort([g | some g, r in granting; r == level]))])

# The decision (CONTRACT.md): denied with every reason; else allowed, with
# an approval when the action's risk asks for one (Custos then holds the
# request until a grant matches, whatever allow says). One else chain, so
# only the branch that applies is evaluated.
decision := object.union({"allow": false, "reasons": sort([m | some m in deny])}, masking) if {
	count(deny) > 0
} else := object.union({"allow": true, "reasons": [allowed_by], "approval": approval}, masking) if {
	approval
} else := object.union({"allow": true, "reasons": [allowed_by]}, masking)
