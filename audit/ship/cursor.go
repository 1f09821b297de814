package ship

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CursorFile is the name of the shipper's cursor in the log directory.
const CursorFile = "ship.cursor"

// cursor is how far Kafka has acknowledged. It only moves forward, and only
// after an acknowledgement: a crash between the two leaves it behind, which
// resends (duplicates, harmless), never skips.
type cursor struct {
	LogID string `json:"log_id"`
	// EventsTopic is the topic Events counts for: another topic starts at 0.
	EventsTopic string `json:"events_topic"`
	// Events is the index of the next event to ship.
	Events int64 `json:"events"`
	// CheckpointsTopic, CheckpointsOffset and Checkpoints: the byte offset in
	// the log's checkpoints file of the next checkpoint to ship, and how many
	// were shipped.
	CheckpointsTopic  string `json:"checkpoints_topic"`
	CheckpointsOffset int64  `json:"checkpoints_offset"`
	Checkpoints       int64  `json:"checkpoints"`
}

// loadCursor reads the cursor in dir. A missing file is the start; so is an
// unreadable one (a crash of a file system that does not order rename after
// the data), since starting over only sends duplicates.
func loadCursor(dir string) (cursor, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, CursorFile))
	if errors.Is(err, fs.ErrNotExist) {
		return cursor{}, true, nil
	}
	if err != nil {
		return cursor{}, false, fmt.Errorf("read %s: %w", CursorFile, err)
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.Events < 0 || c.CheckpointsOffset < 0 || c.Checkpoints < 0 {
		return cursor{}, false, nil
	}
	return c, true, nil
}

// save writes the cursor atomically: a temporary file, fsynced, renamed over
// the old one, and the directory fsynced.
func (c cursor) save(dir string) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	name := filepath.Join(dir, CursorFile)
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", CursorFile, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", CursorFile, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
