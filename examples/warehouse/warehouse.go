// Package warehouse is the SQL-over-HTTP demo upstream: a small HTTP front
// to a real SQLite database (modernc.org/sqlite) holding the same synthetic
// customers as examples/demo, for a connection of kind sql-http with
// dialect sqlite and statement_from json:/query.
//
// It is the target, not the guard: every statement it is sent runs, reads
// and writes alike, stacked statements included. Custos stands in front of
// it and decides what may reach it. Every record is synthetic (see
// examples/demo).
package warehouse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/custos-dev/custos/examples/demo"
)

// Schema is the warehouse's DDL. Pass it to inspect.WithSQLiteSchema so
// the guard compiles statements against the same tables and columns as the
// target.
const Schema = `CREATE TABLE customers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  email TEXT NOT NULL UNIQUE,
  phone TEXT NOT NULL,
  ssn TEXT NOT NULL,
  card_number TEXT NOT NULL,
  iban TEXT NOT NULL,
  account_number TEXT NOT NULL,
  routing_number TEXT NOT NULL,
  balance TEXT NOT NULL,
  segment TEXT NOT NULL
);
CREATE TABLE accounts (
  account_number TEXT PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  routing_number TEXT NOT NULL,
  iban TEXT NOT NULL,
  balance TEXT NOT NULL
);
`

// Tables are the tables Schema creates.
var Tables = []string{"customers", "accounts"}

// Warehouse is one SQLite database in memory, seeded with customers and
// served over HTTP (ServeHTTP). Statements run one request at a time on a
// single connection, so every request sees the same database.
type Warehouse struct {
	mu   sync.Mutex // serialises use of conn
	db   *sql.DB
	conn *sql.Conn
}

// Open creates the database in memory with Schema and one customers row and
// one accounts row per customer.
func Open(ctx context.Context, customers []demo.Customer) (*Warehouse, error) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return nil, fmt.Errorf("open the warehouse database: %w", err)
	}
	// An in-memory database lives and dies with its connection: the one
	// connection is held for the warehouse's life.
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open the warehouse database: %w", err)
	}
	w := &Warehouse{db: db, conn: conn}
	if err := w.seed(ctx, customers); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Handler returns the warehouse over Customers(50, 1) of examples/demo,
// the records the demo API serves. Each call has its own database. It
// panics if the database cannot be created, which only a broken build does.
func Handler() *Warehouse {
	w, err := Open(context.Background(), demo.Customers(50, 1))
	if err != nil {
		panic(err)
	}
	return w
}

func (w *Warehouse) seed(ctx context.Context, customers []demo.Customer) error {
	if _, err := w.conn.ExecContext(ctx, Schema); err != nil {
		return fmt.Errorf("create the warehouse schema: %w", err)
	}
	tx, err := w.conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seed the warehouse: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	for _, c := range customers {
		if _, err := tx.ExecContext(ctx, `INSERT INTO customers (id, name, email, phone, ssn, card_number, iban,
  account_number, routing_number, balance, segment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.Name, c.Email, c.Phone, c.SSN, c.CardNumber, c.IBAN, c.AccountNumber, c.RoutingNumber, c.Balance, c.Segment); err != nil {
			return fmt.Errorf("seed customer %d: %w", c.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (account_number, customer_id, routing_number, iban, balance)
  VALUES (?, ?, ?, ?, ?)`, c.AccountNumber, c.ID, c.RoutingNumber, c.IBAN, c.Balance); err != nil {
			return fmt.Errorf("seed the account of customer %d: %w", c.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed the warehouse: %w", err)
	}
	return nil
}

// Close closes the database; the data is gone.
func (w *Warehouse) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.conn.Close(), w.db.Close())
}

// MaxRows is the most rows one response carries; a result with more is cut
// and says so (truncated).
const MaxRows = 1000

// Result is what a statement returns: the columns and rows of the last
// statement that returned rows, and how many rows the request changed.
type Result struct {
	Columns []string         `json:"columns"`
	Rows    []map[string]any `json:"rows"`
	// Changes is the number of rows inserted, updated or deleted by the
	// request's statements (SQLite's total_changes() before and after).
	Changes   int64 `json:"changes"`
	Truncated bool  `json:"truncated,omitempty"`
}

// Query runs query, every statement of it, as SQLite runs it.
func (w *Warehouse) Query(ctx context.Context, query string) (Result, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	before, err := w.totalChanges(ctx)
	if err != nil {
		return Result{}, err
	}
	res := Result{Columns: []string{}, Rows: []map[string]any{}}
	// Scanned into any, TEXT is a string, INTEGER int64, REAL float64 and
	// BLOB a copied []byte (base64 in JSON).
	rows, err := w.conn.QueryContext(ctx, query)
	if err != nil {
		return Result{}, err
	}
	cols, err := rows.Columns()
	if err != nil {
		rows.Close()
		return Result{}, err
	}
	res.Columns = append(res.Columns, cols...)
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if len(res.Rows) == MaxRows {
			res.Truncated = true
			break
		}
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return Result{}, err
		}
		row := make(map[string]any, len(cols))
		for i, c := range cols {
			v := vals[i]
			if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
				v = strconv.FormatFloat(f, 'g', -1, 64) // JSON has no infinities
			}
			row[uniqueName(row, c, i)] = v
		}
		res.Rows = append(res.Rows, row)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return Result{}, err
	}
	after, err := w.totalChanges(ctx)
	if err != nil {
		return Result{}, err
	}
	res.Changes = after - before
	return res, nil
}

func (w *Warehouse) totalChanges(ctx context.Context) (int64, error) {
	var n int64
	if err := w.conn.QueryRowContext(ctx, "SELECT total_changes()").Scan(&n); err != nil {
		return 0, fmt.Errorf("count changes: %w", err)
	}
	return n, nil
}

// uniqueName is c, or c with its position when an earlier column of the
// same row has that name (SELECT a.id, b.id).
func uniqueName(row map[string]any, c string, i int) string {
	if _, dup := row[c]; !dup {
		return c
	}
	return c + "_" + strconv.Itoa(i)
}
