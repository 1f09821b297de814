# The default policy of Custos: least privilege by group, deny by default.
#
# data.custos.config (custos/config/data.json) says which groups reach which
# connection at which level (read, write or admin), who approves, and which
# masking each connection adds. Reads need read, writes need write;
# destructive, admin and unknown actions also need a human's approval from an
# approver group (two approvals for admin). Workloads never read Kubernetes
# secrets. Every reason is a sentence the agent's owner can act on.
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
granting[g] := ranks[lv] if {
	some g in input.principal.groups
	lv := access[g]
}

granting[g] := ranks[lv] if {
	some g in object.get(input.principal, "group_names", [])
	lv := access[g]
}

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

deny contains msg if {
	level > 0
	level < needs[risk]
	msg := sprintf("%s has %s access to %q; this %s action (%s) needs %s access", [who, names[level], conn, risk, input.action.summary, names[needs[risk]]])
}

deny contains msg if {
	not needs[risk]
	msg := sprintf("the action's risk %q is not one this policy knows; refused", [risk])
}

deny contains msg if {
	input.principal.kind == "workload"
	input.action.kind == "kubernetes"
	input.action.kubernetes.resource == "secrets"
	msg := sprintf("workloads never read Kubernetes secrets (%s); %s must get them another way", [input.action.summary, who])
}

approvers := object.get(cfg.approvers, conn, object.get(cfg.approvers, "default", []))

approval := {
	"rule": sprintf("%s-needs-approval", [risk]),
	"approvers": approvers,
	"min_approvals": min_approvals,
	"scope": "request",
} if {
	risk in approval_risks
}

default min_approvals := 1

min_approvals := 2 if risk == "admin"

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
