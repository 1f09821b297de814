package inspect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/request"
)

// SQL classifies statements sent to a SQL-over-HTTP endpoint (kind
// sql-http). The statement is taken from where the connection's
// statement_from says and parsed in the connection's dialect by the target's
// own parser: PostgreSQL's (libpg_query, through pg_query_go) or SQLite's
// (modernc.org/sqlite). Every statement of a multi-statement string is
// classified; text the target's parser rejects is unknown.
type SQL struct {
	// SQLiteSchema is optional DDL run into the empty in-memory database that
	// SQLite statements are compiled against (the target's schema makes
	// table and column resolution exact). Without it, tables and columns a
	// statement names are created as they are found.
	SQLiteSchema string
}

// sqlStatement is one statement of a request, as policy sees it.
type sqlStatement struct {
	kind     string
	text     string
	tables   []string
	columns  []string
	hasWhere bool
	risk     Risk
	why      string // a reason for an approver, "" if none
}

func (s sqlStatement) details() map[string]any {
	return map[string]any{"kind": s.kind, "tables": nonNil(s.tables), "columns": nonNil(s.columns),
		"has_where": s.hasWhere, "risk": string(s.risk)}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Inspect returns r's sql action.
func (q SQL) Inspect(ctx context.Context, r *request.Request) (Action, error) {
	dialect := r.Connection.Dialect
	if dialect == "" {
		dialect = config.DialectPostgres
	}
	text, err := statementFrom(r)
	if err != nil {
		return sqlUnknown(r, dialect, err.Error()), nil
	}
	var stmts []sqlStatement
	switch dialect {
	case config.DialectPostgres:
		stmts, err = postgresStatements(text)
	case config.DialectSQLite:
		stmts, err = sqliteStatements(ctx, text, q.SQLiteSchema)
	default:
		return sqlUnknown(r, dialect, "dialect "+quoteShort(dialect)+" is not supported"), nil
	}
	if err != nil {
		a := sqlUnknown(r, dialect, err.Error())
		if len(stmts) > 0 { // what could be read before the error stays visible
			a.Details["statements"] = statementDetails(stmts)
			a.Risk = Higher(a.Risk, maxRisk(stmts))
		}
		return a, nil
	}
	if len(stmts) == 0 {
		return sqlUnknown(r, dialect, "no statement"), nil
	}
	risk := maxRisk(stmts)
	var b strings.Builder
	b.WriteString("sql (" + dialect + ") on " + r.Connection.Name + ": ")
	if len(stmts) > 1 {
		fmt.Fprintf(&b, "%d statements, ", len(stmts))
	}
	for i, s := range stmts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(strings.TrimRight(summaryText(s.text, dialect), "; \t\n"))
		if s.why != "" {
			b.WriteString(" [" + s.why + "]")
		}
		if b.Len() > SummaryMax {
			break
		}
	}
	return Action{Kind: KindSQL, Risk: risk, Summary: oneLine(b.String()),
		Details: map[string]any{"dialect": dialect, "statements": statementDetails(stmts)}}, nil
}

func statementDetails(stmts []sqlStatement) []any {
	out := make([]any, len(stmts))
	for i, s := range stmts {
		out[i] = s.details()
	}
	return out
}

func maxRisk(stmts []sqlStatement) Risk {
	risk := RiskRead
	for _, s := range stmts {
		risk = Higher(risk, s.risk)
	}
	return risk
}

func sqlUnknown(r *request.Request, dialect, why string) Action {
	return Action{Kind: KindSQL, Risk: RiskUnknown,
		Summary: oneLine("sql (" + dialect + ") on " + r.Connection.Name + ": not understood (" + why + ")"),
		Details: map[string]any{"dialect": dialect, "statements": []any{}}}
}

// summaryText is a statement as an approver reads it; a statement that may
// carry a password keeps only its shape.
func summaryText(s, dialect string) string {
	l := strings.ToLower(s)
	if strings.Contains(l, "password") || strings.Contains(l, "dblink") || strings.Contains(l, "secret") {
		if dialect == config.DialectPostgres {
			if n, err := normalizePostgres(s); err == nil {
				return n
			}
		}
		return "(statement with a credential, not shown)"
	}
	return s
}

// statementFrom takes the statement text from where r's connection says
// (statement_from): json:POINTER, query:PARAM, form:PARAM or body (the
// default is json:/query). Anything that could be read two ways is an error.
func statementFrom(r *request.Request) (string, error) {
	from := r.Connection.StatementFrom
	if from == "" {
		from = "json:/query"
	}
	kind, arg, _ := strings.Cut(from, ":")
	var text string
	switch kind {
	case "json":
		body, err := fullBody(r)
		if err != nil {
			return "", err
		}
		v, err := strictJSON(body)
		if err != nil {
			return "", err
		}
		s, ok := jsonPointer(v, arg)
		if !ok {
			return "", fmt.Errorf("no %s in the JSON body", arg)
		}
		if text, ok = s.(string); !ok {
			return "", fmt.Errorf("%s is not a string", arg)
		}
	case "query":
		if len(r.Body) > 0 || r.BodyBytes > 0 || r.BodyBytes < 0 && r.Method != "GET" && r.Method != "HEAD" {
			// Some engines (ClickHouse) append the body to the query
			// parameter: what the parameter says is not all that runs.
			return "", errors.New("a body beside the statement parameter")
		}
		s, ok, err := singleParam(r.RawQuery, arg)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("no query parameter %s", arg)
		}
		text = s
	case "form":
		body, err := fullBody(r)
		if err != nil {
			return "", err
		}
		if _, inQuery, _ := singleParam(r.RawQuery, arg); inQuery {
			return "", fmt.Errorf("parameter %s both in the query and the form", arg)
		}
		if !utf8.Valid(body) {
			return "", errors.New("form body is not valid UTF-8")
		}
		s, ok, err := singleParam(string(body), arg)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("no form parameter %s", arg)
		}
		text = s
	case "body":
		body, err := fullBody(r)
		if err != nil {
			return "", err
		}
		if !utf8.Valid(body) {
			return "", errors.New("body is not valid UTF-8")
		}
		text = string(body)
	default:
		return "", fmt.Errorf("statement_from %s is not a statement source", quoteShort(from))
	}
	if strings.ContainsRune(text, 0) {
		return "", errors.New("statement holds a NUL byte")
	}
	if strings.TrimSpace(text) == "" {
		return "", errors.New("empty statement")
	}
	return text, nil
}
