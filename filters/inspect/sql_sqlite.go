package inspect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite statements are compiled (sqlite3_prepare_v2, never stepped) by
// SQLite itself, against an empty in-memory database: SQLite splits the
// text into statements (so its comment rules, not ours, decide where each
// ends), sqlite3_stmt_readonly says whether a statement writes, and the
// authorizer reports every table, column, function, pragma and attach the
// statement would use. Tables and columns the database lacks are created
// as SQLite names them missing, up to a bound.

// maxSQLiteStatements and maxSQLiteFixes bound the work on one request.
const (
	maxSQLiteStatements = 256
	maxSQLiteFixes      = 64
)

// sqliteEvent is one authorizer call.
type sqliteEvent struct {
	action     int32
	arg1, arg2 string
}

// sqliteCollectors maps a database handle to the events of the statement
// being compiled on it.
var sqliteCollectors = struct {
	sync.Mutex
	m map[uintptr]*[]sqliteEvent
}{m: map[uintptr]*[]sqliteEvent{}}

// sqliteAuthorizer records every action and allows it: nothing is run.
func sqliteAuthorizer(_ *libc.TLS, db uintptr, action int32, z1, z2, _, _ uintptr) int32 {
	sqliteCollectors.Lock()
	ev := sqliteCollectors.m[db]
	sqliteCollectors.Unlock()
	if ev == nil {
		return sqlite3.SQLITE_DENY
	}
	var a1, a2 string
	if z1 != 0 {
		a1 = libc.GoString(z1)
	}
	if z2 != 0 {
		a2 = libc.GoString(z2)
	}
	*ev = append(*ev, sqliteEvent{action, a1, a2})
	return sqlite3.SQLITE_OK
}

// cFunc turns a Go function into the function pointer the transpiled C
// calls, as modernc.org/sqlite does for its own callbacks (see go11func).
func cFunc[T any](f T) uintptr { return *(*uintptr)(unsafe.Pointer(&struct{ f T }{f})) }

// peek reads a pointer the transpiled C wrote at p. C memory is libc's, not
// the Go heap's, so it never moves.
func peek(p uintptr) uintptr { return *(*uintptr)(unsafe.Add(unsafe.Pointer(nil), p)) }

// sqliteDB is one in-memory database on its own thread-local state.
type sqliteDB struct {
	tls    *libc.TLS
	db     uintptr
	events []sqliteEvent
	tables map[string][]string // created table → its columns
}

func openSQLite() (*sqliteDB, error) {
	tls := libc.NewTLS()
	name, err := libc.CString(":memory:")
	if err != nil {
		tls.Close()
		return nil, err
	}
	defer libc.Xfree(tls, name)
	pdb := tls.Alloc(8)
	defer tls.Free(8)
	rc := sqlite3.Xsqlite3_open_v2(tls, name, pdb, sqlite3.SQLITE_OPEN_READWRITE|sqlite3.SQLITE_OPEN_CREATE|sqlite3.SQLITE_OPEN_MEMORY, 0)
	db := peek(pdb)
	if rc != sqlite3.SQLITE_OK {
		if db != 0 {
			sqlite3.Xsqlite3_close_v2(tls, db)
		}
		tls.Close()
		return nil, fmt.Errorf("open SQLite: code %d", rc)
	}
	s := &sqliteDB{tls: tls, db: db, tables: map[string][]string{}}
	sqliteCollectors.Lock()
	sqliteCollectors.m[db] = &s.events
	sqliteCollectors.Unlock()
	sqlite3.Xsqlite3_set_authorizer(tls, db, cFunc(sqliteAuthorizer), db)
	return s, nil
}

func (s *sqliteDB) close() {
	sqlite3.Xsqlite3_set_authorizer(s.tls, s.db, 0, 0)
	sqliteCollectors.Lock()
	delete(sqliteCollectors.m, s.db)
	sqliteCollectors.Unlock()
	sqlite3.Xsqlite3_close_v2(s.tls, s.db)
	s.tls.Close()
}

// exec runs DDL of our own (the schema, tables found missing) with the
// events discarded.
func (s *sqliteDB) exec(sql string) error {
	z, err := libc.CString(sql)
	if err != nil {
		return err
	}
	defer libc.Xfree(s.tls, z)
	rc := sqlite3.Xsqlite3_exec(s.tls, s.db, z, 0, 0, 0)
	s.events = s.events[:0]
	if rc != sqlite3.SQLITE_OK {
		return errors.New(libc.GoString(sqlite3.Xsqlite3_errmsg(s.tls, s.db)))
	}
	return nil
}

// prepare compiles the statement at z; it returns whether it was readonly,
// the offset of the tail, whether there was a statement at all, and
// SQLite's error message.
func (s *sqliteDB) prepare(z uintptr) (readonly bool, tail uintptr, empty bool, msg string) {
	pp := s.tls.Alloc(16)
	defer s.tls.Free(16)
	s.events = s.events[:0]
	rc := sqlite3.Xsqlite3_prepare_v2(s.tls, s.db, z, -1, pp, pp+8)
	stmt := peek(pp)
	tail = peek(pp + 8)
	if rc != sqlite3.SQLITE_OK {
		if stmt != 0 {
			sqlite3.Xsqlite3_finalize(s.tls, stmt)
		}
		return false, 0, false, libc.GoString(sqlite3.Xsqlite3_errmsg(s.tls, s.db))
	}
	if stmt == 0 {
		return true, tail, true, ""
	}
	readonly = sqlite3.Xsqlite3_stmt_readonly(s.tls, stmt) != 0
	sqlite3.Xsqlite3_finalize(s.tls, stmt)
	return readonly, tail, false, ""
}

// fix creates what SQLite said is missing; false when it cannot.
func (s *sqliteDB) fix(msg string) bool {
	switch {
	case strings.HasPrefix(msg, "no such table: "):
		name := strings.TrimPrefix(msg, "no such table: ")
		temp := ""
		if n, ok := strings.CutPrefix(name, "main."); ok {
			name = n
		} else if n, ok := strings.CutPrefix(name, "temp."); ok {
			name, temp = n, "TEMP "
		}
		if strings.Contains(name, ".") {
			return false
		}
		if _, ok := s.tables[strings.ToLower(name)]; ok {
			return false
		}
		s.tables[strings.ToLower(name)] = nil
		return s.exec("CREATE "+temp+"TABLE "+sqliteQuote(name)+"(_custos_)") == nil
	case strings.HasPrefix(msg, "table ") && strings.Contains(msg, " has no column named "):
		t, col, _ := strings.Cut(strings.TrimPrefix(msg, "table "), " has no column named ")
		return s.fix("no such column: " + t + "." + col)
	case strings.HasPrefix(msg, "no such column: "):
		ref := strings.TrimPrefix(msg, "no such column: ")
		col := ref
		var owners []string
		if i := strings.LastIndexByte(ref, '.'); i >= 0 {
			col = ref[i+1:]
			qual := strings.ToLower(ref[:i])
			qual = qual[strings.LastIndexByte(qual, '.')+1:]
			if _, ok := s.tables[qual]; ok {
				owners = []string{qual}
			}
		}
		if owners == nil {
			for t := range s.tables {
				owners = append(owners, t)
			}
		}
		slices.Sort(owners)
		added := false
		for _, t := range owners {
			if slices.Contains(s.tables[t], strings.ToLower(col)) {
				continue
			}
			s.tables[t] = append(s.tables[t], strings.ToLower(col))
			if s.exec("ALTER TABLE "+sqliteQuote(t)+" ADD COLUMN "+sqliteQuote(col)) == nil {
				added = true
				if ref == col { // unqualified: one owner, or it becomes ambiguous
					break
				}
			}
		}
		return added
	}
	return false
}

func sqliteQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// sqliteStatements compiles text statement by statement with SQLite.
func sqliteStatements(ctx context.Context, text, schema string) ([]sqlStatement, error) {
	s, err := openSQLite()
	if err != nil {
		return nil, err
	}
	defer s.close()
	if schema != "" {
		if err := s.exec(schema); err != nil {
			return nil, fmt.Errorf("SQLite schema: %w", err)
		}
	}
	z, err := libc.CString(text)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(s.tls, z)
	var out []sqlStatement
	pos := z
	for fixes := 0; ; {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if len(out) >= maxSQLiteStatements {
			return out, fmt.Errorf("more than %d statements", maxSQLiteStatements)
		}
		readonly, tail, empty, msg := s.prepare(pos)
		if msg != "" {
			if fixes < maxSQLiteFixes && s.fix(msg) {
				fixes++
				continue
			}
			return out, fmt.Errorf("SQLite does not compile it: %s", msg)
		}
		if empty {
			// A comment or a lone ";": sqlite3_exec goes on after it, so
			// must we.
			if tail <= pos || int(tail-z) >= len(text) {
				return out, nil
			}
			pos = tail
			continue
		}
		start, end := int(pos-z), int(tail-z)
		if end <= start || end > len(text) {
			return out, errors.New("SQLite statement bounds out of range")
		}
		out = append(out, classifySQLite(text[start:end], readonly, s.events))
		pos = tail
	}
}

// sqliteAdminFunctions reach files, extensions or the database's pages.
var sqliteAdminFunctions = map[string]bool{
	"load_extension": true, "readfile": true, "writefile": true, "edit": true, "fts3_tokenizer": true,
	"sqlite_dbpage": true, "zipfile": true, "fsdir": true, "sqlar_compress": true, "sqlar_uncompress": true,
	"lsdir": true, "shell_exec": true,
}

// sqliteReadPragmas only describe the schema.
var sqliteReadPragmas = map[string]bool{
	"table_info": true, "table_xinfo": true, "index_list": true, "index_info": true, "index_xinfo": true,
	"foreign_key_list": true, "database_list": true, "collation_list": true, "table_list": true,
}

func classifySQLite(text string, readonly bool, events []sqliteEvent) sqlStatement {
	st := sqlStatement{text: strings.TrimSpace(text), risk: RiskRead}
	words := sqliteTopWords(text)
	if len(words) > 0 {
		st.kind = strings.ToLower(words[0])
	}
	var why []string
	raise := func(r Risk, reason string) {
		st.risk = Higher(st.risk, r)
		if reason != "" && !slices.Contains(why, reason) {
			why = append(why, reason)
		}
	}
	var target string
	readTarget := false
	ddl := false
	for _, e := range events {
		switch e.action {
		case sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_READ,
			sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_TRANSACTION,
			sqlite3.SQLITE_SAVEPOINT, sqlite3.SQLITE_PRAGMA, sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_ANALYZE:
		default:
			ddl = true // the schema changes; its own writes to sqlite_schema follow
		}
	}
	for _, e := range events {
		switch e.action {
		case sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_CREATE_VIEW,
			sqlite3.SQLITE_ALTER_TABLE, sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE, sqlite3.SQLITE_REINDEX,
			sqlite3.SQLITE_CREATE_TEMP_TRIGGER:
			ddl = true
			raise(RiskAdmin, "changes the schema")
		case sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_CREATE_TEMP_INDEX, sqlite3.SQLITE_CREATE_TEMP_VIEW:
			ddl = true
			raise(RiskWrite, "")
		case sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_TRIGGER, sqlite3.SQLITE_DROP_VIEW,
			sqlite3.SQLITE_DROP_TEMP_TABLE, sqlite3.SQLITE_DROP_TEMP_INDEX, sqlite3.SQLITE_DROP_TEMP_TRIGGER, sqlite3.SQLITE_DROP_TEMP_VIEW:
			ddl = true
			raise(RiskDestructive, "drops "+e.arg1)
			st.tables = addName(st.tables, e.arg1)
		case sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH:
			raise(RiskAdmin, "attaches a database file")
		case sqlite3.SQLITE_PRAGMA:
			if e.arg2 != "" || !sqliteReadPragmas[strings.ToLower(e.arg1)] {
				raise(RiskAdmin, "PRAGMA "+strings.ToLower(e.arg1))
			}
		case sqlite3.SQLITE_FUNCTION:
			if sqliteAdminFunctions[strings.ToLower(e.arg2)] {
				raise(RiskAdmin, "calls "+strings.ToLower(e.arg2))
			}
		case sqlite3.SQLITE_ANALYZE:
			raise(RiskWrite, "")
		case sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE:
			if ddl {
				continue // DROP and ALTER check the rows they remove
			}
			if isSQLiteInternal(e.arg1) {
				raise(RiskAdmin, "writes the schema table")
				continue
			}
			st.tables = addName(st.tables, e.arg1)
			switch e.action {
			case sqlite3.SQLITE_INSERT:
				raise(RiskWrite, "")
			case sqlite3.SQLITE_UPDATE:
				target = e.arg1
				st.columns = addName(st.columns, e.arg2)
				if st.kind == "with" || st.kind == "" {
					st.kind = "update"
				}
			case sqlite3.SQLITE_DELETE:
				target = e.arg1
				if st.kind == "with" || st.kind == "" {
					st.kind = "delete"
				}
			}
			if e.action == sqlite3.SQLITE_INSERT && (st.kind == "with" || st.kind == "") {
				st.kind = "insert"
			}
		case sqlite3.SQLITE_READ:
			if isSQLiteInternal(e.arg1) && e.arg1 != "sqlite_master" && e.arg1 != "sqlite_schema" {
				continue
			}
			st.tables = addName(st.tables, e.arg1)
			if e.arg2 != "" && e.arg2 != "_custos_" {
				st.columns = addName(st.columns, e.arg2)
			}
		}
	}
	for _, e := range events {
		if e.action == sqlite3.SQLITE_READ && target != "" && strings.EqualFold(e.arg1, target) {
			readTarget = true
		}
	}
	switch st.kind {
	case "with":
		st.kind = "select"
	case "vacuum":
		raise(RiskAdmin, "VACUUM")
	}
	if target != "" {
		st.hasWhere = slices.Contains(words, "WHERE") && readTarget
		if st.hasWhere {
			raise(RiskWrite, "")
		} else {
			raise(RiskDestructive, strings.ToUpper(st.kind)+" without WHERE")
		}
	}
	if !readonly && st.risk == RiskRead {
		raise(RiskWrite, "SQLite says it writes")
	}
	st.why = strings.Join(why, "; ")
	return st
}

func isSQLiteInternal(t string) bool { return strings.HasPrefix(strings.ToLower(t), "sqlite_") }

func addName(list []string, n string) []string {
	if n == "" || n == "_custos_" || slices.Contains(list, n) {
		return list
	}
	return append(list, n)
}

// sqliteTopWords returns the upper-cased keywords and identifiers of a
// statement outside parentheses, strings, quoted identifiers and comments,
// read with SQLite's tokenizer rules (comments do not nest; an unterminated
// block comment runs to the end). SQLite has already accepted the text and
// fixed its bounds; this only finds the first word and a top-level WHERE.
func sqliteTopWords(s string) []string {
	var out []string
	depth := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return out
			}
			i += j + 4
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(s) {
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						j += 2
						continue
					}
					break
				}
				j++
			}
			i = j + 1
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return out
			}
			i += j + 1
		case c == '(':
			depth++
			i++
		case c == ')':
			depth--
			i++
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80:
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9' || s[j] >= 0x80) {
				j++
			}
			if depth == 0 {
				out = append(out, strings.ToUpper(s[i:j]))
			}
			i = j
		default:
			i++
		}
	}
	return out
}
