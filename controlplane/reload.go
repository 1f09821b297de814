package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/custos-dev/custos/config"
)

// Reloader reloads the configuration file when it changes on disk or the
// process receives SIGHUP. A file that does not load or validate is rejected
// with all its errors and the running configuration stays. That includes a
// file over config's limits (config.MaxFileSize, config.MaxNodes) and a path
// that is not a regular file: config.Load refuses them in bounded time and
// memory, so a hostile file written over the configuration cannot stop
// Custos or block its reload loop.
type Reloader struct {
	// Path is the configuration file.
	Path string
	// Check, if set, refuses a configuration that loads but must not run here
	// (serve refuses a dev: block).
	Check func(*config.Config) error
	// Apply installs a new configuration. It is called with one configuration
	// at a time; an error keeps the previous one.
	Apply func(context.Context, *config.Config) error
	// Log receives one line per reload, accepted or rejected.
	Log *slog.Logger
	// Debounce groups the several events one save produces (default 100 ms).
	Debounce time.Duration
}

// Run watches until ctx ends. It watches the file's directory, so editors
// that replace the file (rename over it) are seen too.
func (r *Reloader) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", r.Path, err)
	}
	defer w.Close()
	abs, err := filepath.Abs(r.Path)
	if err != nil {
		return fmt.Errorf("watch %s: %w", r.Path, err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("watch %s: %w", filepath.Dir(abs), err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	debounce := r.Debounce
	if debounce <= 0 {
		debounce = 100 * time.Millisecond
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			r.Log.Warn("config watch", "error", err)
		case <-hup:
			r.Log.Info("config reload requested by SIGHUP", "path", r.Path)
			r.Reload(ctx)
		case <-timer.C:
			r.Reload(ctx)
		}
	}
}

// Reload loads the file once and applies it if it is valid.
func (r *Reloader) Reload(ctx context.Context) error {
	cfg, err := config.Load(r.Path)
	if err == nil && r.Check != nil {
		err = r.Check(cfg)
	}
	if err == nil {
		err = r.Apply(ctx, cfg)
	}
	if err != nil {
		r.Log.Error("config rejected; the previous configuration stays", "path", r.Path, "error", err)
		return err
	}
	r.Log.Info("config reloaded", "path", r.Path)
	return nil
}
