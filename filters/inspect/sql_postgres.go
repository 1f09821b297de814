package inspect

import (
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// postgresStatements parses text with PostgreSQL's own parser (libpg_query)
// and classifies each statement. Comments nest, dollar quoting and E”
// strings are read exactly as the server reads them.
func postgresStatements(text string) ([]sqlStatement, error) {
	tree, err := pg.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL does not parse it: %w", err)
	}
	var out []sqlStatement
	for _, raw := range tree.GetStmts() {
		start := int(raw.GetStmtLocation())
		end := len(text)
		if l := int(raw.GetStmtLen()); l > 0 && start+l <= len(text) {
			end = start + l
		}
		if start < 0 || start > end {
			start = 0
		}
		st := classifyPostgres(raw.GetStmt())
		st.text = strings.TrimSpace(text[start:end])
		out = append(out, st)
	}
	return out, nil
}

// normalizePostgres replaces a statement's constants with $n.
func normalizePostgres(s string) (string, error) { return pg.Normalize(s) }

// pgWalk collects what a statement touches, anywhere in its tree (CTEs,
// subqueries, function arguments).
type pgWalk struct {
	risk     Risk
	why      []string
	tables   []string
	columns  []string
	ctes     []string
	hasWhere bool
	depth    int
}

func (w *pgWalk) raise(r Risk, why string) {
	if rank(r) > rank(w.risk) || w.risk == "" {
		w.risk = r
	}
	if why != "" && !slices.Contains(w.why, why) {
		w.why = append(w.why, why)
	}
}

// pgNames are PostgreSQL statement node types by the kind policy sees.
var pgNames = map[string]string{
	"SelectStmt": "select", "InsertStmt": "insert", "UpdateStmt": "update", "DeleteStmt": "delete",
	"MergeStmt": "merge", "TruncateStmt": "truncate", "DropStmt": "drop", "CreateStmt": "create",
	"AlterTableStmt": "alter", "DoStmt": "do", "ExecuteStmt": "execute", "CopyStmt": "copy",
	"ExplainStmt": "explain", "TransactionStmt": "transaction", "VariableSetStmt": "set",
	"VariableShowStmt": "show", "CallStmt": "call", "GrantStmt": "grant", "GrantRoleStmt": "grant",
	"PrepareStmt": "prepare", "CreateTableAsStmt": "create", "ViewStmt": "create", "IndexStmt": "create",
	"CreateFunctionStmt": "create", "DropdbStmt": "drop", "DropRoleStmt": "drop",
}

// pgDangerous are functions that reach outside the statement: the server's
// files and processes, other sessions, other servers, or SQL built from
// strings at run time.
var pgDangerous = map[string]bool{
	"pg_terminate_backend": true, "pg_cancel_backend": true, "pg_reload_conf": true, "pg_rotate_logfile": true,
	"pg_promote": true, "pg_switch_wal": true, "pg_create_restore_point": true, "pg_stat_file": true,
	"lo_import": true, "lo_export": true, "lo_unlink": true, "lo_from_bytea": true, "lo_put": true,
	"lo_create": true, "lo_creat": true, "lo_open": true, "lowrite": true, "loread": true, "lo_get": true, "lo_truncate": true,
	"query_to_xml": true, "query_to_xml_and_xmlschema": true, "query_to_xmlschema": true, "cursor_to_xml": true,
	"cursor_to_xmlschema": true, "database_to_xml": true, "schema_to_xml": true, "ts_stat": true,
	"set_config": true, "pg_logical_emit_message": true, "pg_import_system_collations": true,
	"pg_log_backend_memory_contexts": true, "pg_sleep": true, "pg_sleep_for": true, "pg_sleep_until": true,
}

// pgDangerousPrefixes extend pgDangerous to function families.
var pgDangerousPrefixes = []string{"dblink", "pg_read_", "pg_ls_", "pg_file_", "pg_replication_", "pg_create_",
	"pg_drop_", "pg_backup_", "pg_start_backup", "pg_stop_backup", "pg_advisory", "pg_try_advisory", "lo_"}

// pgWriting are functions that change state without DML.
var pgWriting = map[string]bool{"nextval": true, "setval": true, "pg_notify": true, "txid_current": true}

func classifyPostgres(n *pg.Node) sqlStatement {
	w := &pgWalk{}
	kind := "other"
	if n != nil && n.GetNode() != nil {
		m := n.ProtoReflect()
		if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("node")); fd != nil {
			t := string(fd.Message().Name())
			if k, ok := pgNames[t]; ok {
				kind = k
			} else {
				kind = strings.ToLower(strings.TrimSuffix(t, "Stmt"))
			}
		}
	}
	w.top(n)
	if n != nil {
		w.walk(n.ProtoReflect())
	}
	if w.risk == "" {
		w.risk = RiskRead
	}
	tables := make([]string, 0, len(w.tables))
	for _, t := range w.tables {
		if !slices.Contains(w.ctes, t) {
			tables = append(tables, t)
		}
	}
	if kind == "insert" || kind == "select" || kind == "merge" || kind == "copy" {
		w.hasWhere = false
	}
	return sqlStatement{kind: kind, tables: tables, columns: w.columns, hasWhere: w.hasWhere, risk: w.risk,
		why: strings.Join(w.why, "; ")}
}

// top classifies the statement's own node type.
func (w *pgWalk) top(n *pg.Node) {
	switch s := n.GetNode().(type) {
	case *pg.Node_SelectStmt, *pg.Node_VariableShowStmt, *pg.Node_TransactionStmt, *pg.Node_FetchStmt,
		*pg.Node_ClosePortalStmt, *pg.Node_DeclareCursorStmt, *pg.Node_DiscardStmt, *pg.Node_ListenStmt,
		*pg.Node_UnlistenStmt, *pg.Node_DeallocateStmt, *pg.Node_PrepareStmt:
		w.raise(RiskRead, "")
	case *pg.Node_ExplainStmt:
		w.raise(RiskRead, "")
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		// classified by walk, which sees nested DML too
	case *pg.Node_NotifyStmt, *pg.Node_LockStmt, *pg.Node_RefreshMatViewStmt, *pg.Node_VacuumStmt:
		w.raise(RiskWrite, "")
	case *pg.Node_VariableSetStmt:
		switch strings.ToLower(s.VariableSetStmt.GetName()) {
		case "role", "session_authorization", "search_path", "session_replication_role":
			w.raise(RiskAdmin, "changes "+strings.ToLower(s.VariableSetStmt.GetName()))
		default:
			w.raise(RiskWrite, "")
		}
	case *pg.Node_TruncateStmt:
		w.raise(RiskDestructive, "truncates")
	case *pg.Node_DropStmt:
		w.raise(RiskDestructive, "drops")
	case *pg.Node_DoStmt:
		w.raise(RiskAdmin, "runs a DO block")
	case *pg.Node_ExecuteStmt:
		w.raise(RiskAdmin, "executes a prepared statement")
	case *pg.Node_CallStmt:
		w.raise(RiskAdmin, "calls a procedure")
	case *pg.Node_CopyStmt:
		c := s.CopyStmt
		switch {
		case c.GetIsProgram():
			w.raise(RiskAdmin, "COPY runs a program")
		case c.GetFilename() != "":
			w.raise(RiskAdmin, "COPY reads or writes a server file")
		case c.GetIsFrom():
			w.raise(RiskWrite, "")
		default:
			w.raise(RiskRead, "")
		}
	default:
		w.raise(RiskAdmin, "changes the schema, roles or server")
	}
}

// maxPGDepth bounds the walk; libpg_query already bounds its own nesting.
const maxPGDepth = 2000

func (w *pgWalk) walk(m protoreflect.Message) {
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > maxPGDepth {
		w.raise(RiskUnknown, "nested too deep")
		return
	}
	w.visit(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.walk(l.Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			w.walk(v.Message())
		}
		return true
	})
}

func (w *pgWalk) visit(m any) {
	switch n := m.(type) {
	case *pg.RangeVar:
		name := n.GetRelname()
		if n.GetSchemaname() != "" {
			name = n.GetSchemaname() + "." + name
		}
		if !slices.Contains(w.tables, name) {
			w.tables = append(w.tables, name)
		}
	case *pg.CommonTableExpr:
		w.ctes = append(w.ctes, n.GetCtename())
	case *pg.ColumnRef:
		var parts []string
		for _, f := range n.GetFields() {
			switch f := f.GetNode().(type) {
			case *pg.Node_String_:
				parts = append(parts, f.String_.GetSval())
			case *pg.Node_AStar:
				parts = append(parts, "*")
			}
		}
		c := strings.Join(parts, ".")
		if !slices.Contains(w.columns, c) {
			w.columns = append(w.columns, c)
		}
	case *pg.FuncCall:
		var name string
		if fn := n.GetFuncname(); len(fn) > 0 {
			name = strings.ToLower(fn[len(fn)-1].GetString_().GetSval())
		}
		if pgDangerous[name] || hasAnyPrefix(name, pgDangerousPrefixes) {
			w.raise(RiskAdmin, "calls "+name)
		} else if pgWriting[name] {
			w.raise(RiskWrite, "calls "+name)
		}
	case *pg.InsertStmt:
		w.raise(RiskWrite, "")
	case *pg.UpdateStmt:
		if pgHasWhere(n.GetWhereClause()) {
			w.hasWhere = true
			w.raise(RiskWrite, "")
		} else {
			w.raise(RiskDestructive, "UPDATE without WHERE")
		}
	case *pg.DeleteStmt:
		if pgHasWhere(n.GetWhereClause()) {
			w.hasWhere = true
			w.raise(RiskWrite, "")
		} else {
			w.raise(RiskDestructive, "DELETE without WHERE")
		}
	case *pg.MergeStmt:
		w.raise(RiskWrite, "")
	case *pg.MergeWhenClause:
		if n.GetCommandType() == pg.CmdType_CMD_DELETE {
			w.raise(RiskDestructive, "MERGE deletes")
		}
	case *pg.IntoClause:
		w.raise(RiskAdmin, "SELECT INTO creates a table")
	case *pg.LockingClause:
		w.raise(RiskWrite, "locks rows")
	case *pg.DoStmt:
		w.raise(RiskAdmin, "runs a DO block")
	}
}

// pgHasWhere reports whether a WHERE clause restricts rows: it exists and
// refers to a column (WHERE true, WHERE 1=1 restrict nothing) or a cursor.
func pgHasWhere(n *pg.Node) bool {
	if n == nil || n.GetNode() == nil {
		return false
	}
	found := false
	var walk func(m protoreflect.Message, depth int)
	walk = func(m protoreflect.Message, depth int) {
		if found || depth > maxPGDepth {
			return
		}
		switch m.Interface().(type) {
		case *pg.ColumnRef, *pg.CurrentOfExpr:
			found = true
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					walk(l.Get(i).Message(), depth+1)
				}
			case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
				walk(v.Message(), depth+1)
			}
			return !found
		})
	}
	walk(n.ProtoReflect(), 0)
	return found
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
