package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// notifyChannel is the LISTEN/NOTIFY channel: its payload is the id of the
// approval that changed.
const notifyChannel = "custos_approvals"

// schema is created once by whichever replica comes first (under an
// advisory lock, so two starting together do not race). The document is
// the approval; the columns beside it are what queries select on.
const schema = `
CREATE TABLE IF NOT EXISTS custos_approvals (
	id         text PRIMARY KEY,
	dedupe_key text NOT NULL,
	state      text NOT NULL,
	created    timestamptz NOT NULL,
	doc        jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS custos_approvals_pending ON custos_approvals (dedupe_key) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS custos_approvals_state ON custos_approvals (state, created DESC);
`

// PostgresStore keeps approvals in PostgreSQL, shared by every replica.
type PostgresStore struct {
	pool   *pgxpool.Pool
	w      watchers
	cancel context.CancelFunc
	done   chan struct{}
}

// OpenPostgres connects to the database at url (postgres://…), creates the
// table if needed and listens for the changes every replica makes.
func OpenPostgres(ctx context.Context, url string) (*PostgresStore, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	// LISTEN is in force before OpenPostgres returns, so no change
	// committed afterwards is missed.
	conn, err := listenConn(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s := &PostgresStore{pool: pool, cancel: cancel, done: make(chan struct{})}
	go s.listen(lctx, conn)
	return s, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('custos_approvals schema'))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	return nil
}

// listenConn is a connection of its own in LISTEN: it has session state,
// so it never goes back to the pool.
func listenConn(ctx context.Context, pool *pgxpool.Pool) (*pgx.Conn, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	conn := c.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// listen wakes the watchers of each approval named in a notification.
// When the connection is lost it reconnects with backoff and wakes every
// watcher, since notifications sent meanwhile are gone.
func (s *PostgresStore) listen(ctx context.Context, conn *pgx.Conn) {
	defer close(s.done)
	backoff := 50 * time.Millisecond
	for {
		for conn != nil {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				conn.Close(context.Background())
				conn = nil
				break
			}
			backoff = 50 * time.Millisecond
			s.w.wake(n.Payload)
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
		if c, err := listenConn(ctx, s.pool); err == nil {
			conn = c
			s.w.wakeAll()
		}
	}
}

// Create implements Store. An advisory lock on the dedupe key serialises
// two replicas opening the same request, so they share one approval.
func (s *PostgresStore) Create(ctx context.Context, a Approval, now time.Time) (Approval, bool, error) {
	key := dedupeKey(&a)
	var out Approval
	created := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, key); err != nil {
			return err
		}
		var raw []byte
		err := tx.QueryRow(ctx, `SELECT doc FROM custos_approvals WHERE dedupe_key = $1 AND state = 'pending' ORDER BY created DESC LIMIT 1`, key).Scan(&raw)
		switch {
		case err == nil:
			var old Approval
			if err := json.Unmarshal(raw, &old); err != nil {
				return err
			}
			if now.Before(old.Expires) {
				out = old
				return nil
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		doc, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO custos_approvals (id, dedupe_key, state, created, doc) VALUES ($1, $2, $3, $4, $5)`,
			a.ID, key, a.State, a.Created, doc); err != nil {
			return err
		}
		out, created = a, true
		return nil
	})
	if err != nil {
		return Approval{}, false, fmt.Errorf("create approval: %w", err)
	}
	return out, created, nil
}

// Get implements Store.
func (s *PostgresStore) Get(ctx context.Context, id string) (Approval, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT doc FROM custos_approvals WHERE id = $1`, id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return Approval{}, ErrNotFound
	}
	if err != nil {
		return Approval{}, fmt.Errorf("get approval: %w", err)
	}
	var a Approval
	if err := json.Unmarshal(raw, &a); err != nil {
		return Approval{}, fmt.Errorf("get approval %s: %w", id, err)
	}
	return a, nil
}

// List implements Store.
func (s *PostgresStore) List(ctx context.Context, state string, limit int) ([]Approval, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := s.pool.Query(ctx, `SELECT doc FROM custos_approvals WHERE ($1 = '' OR state = $1) ORDER BY created DESC LIMIT $2`, state, limit)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Approval, error) {
		var raw []byte
		if err := r.Scan(&raw); err != nil {
			return Approval{}, err
		}
		var a Approval
		return a, json.Unmarshal(raw, &a)
	})
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	return out, nil
}

// Update implements Store: the row is locked (SELECT … FOR UPDATE) for
// the transaction, and the notification is sent with the commit.
func (s *PostgresStore) Update(ctx context.Context, id string, change func(a *Approval) error) (Approval, error) {
	var a Approval
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var raw []byte
		err := tx.QueryRow(ctx, `SELECT doc FROM custos_approvals WHERE id = $1 FOR UPDATE`, id).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		if err := change(&a); err != nil {
			return err
		}
		doc, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE custos_approvals SET state = $2, doc = $3 WHERE id = $1`, id, a.State, doc); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, id)
		return err
	})
	if err != nil {
		return Approval{}, err
	}
	return a, nil
}

// Watch implements Store: woken by the notifications of every replica,
// this one's included.
func (s *PostgresStore) Watch(id string) (<-chan struct{}, func()) { return s.w.watch(id) }

// Close implements Store.
func (s *PostgresStore) Close() error {
	s.cancel()
	<-s.done
	s.pool.Close()
	return nil
}

// redactURL drops the password from a database URL, for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "postgres://…"
	}
	return u.Redacted()
}
