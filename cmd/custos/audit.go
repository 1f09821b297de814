package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/audit/ship"
	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/controlplane"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify the signed audit log, replay a session, and build evidence for an examiner",
		Long: `Work with the audit log (audit.dir): every decision, approval and response
as an event in a Merkle tree whose checkpoints are signed.

  custos audit key --config FILE           the verifier key, to hold apart from the log
  custos audit verify --dir DIR --key K    every event and checkpoint, from the bytes
  custos audit proof --dir DIR --index N   one event, its inclusion proof, its checkpoint
  custos audit replay --dir DIR --session S    one session as a timeline
  custos audit report --dir DIR --session S    the evidence for an examiner

These commands only read the log directory: they are safe beside a running
custos. --key takes a verifier key (` + "`custos audit key`" + ` prints it) or @FILE
holding one; never the signing key.`,
	}
	cmd.AddCommand(
		newAuditKeyCmd(g),
		newAuditVerifyCmd(g),
		newAuditProofCmd(g),
		newAuditReplayCmd(g),
		newAuditReportCmd(g),
	)
	return cmd
}

func newAuditKeyCmd(g *globals) *cobra.Command {
	var keyFile, cfgPath, logID string
	var generate bool
	cmd := &cobra.Command{
		Use:   "key (--config FILE | --key-file FILE) [--generate [--log-id ID]]",
		Short: "Print the checkpoint verifier key, to hold apart from the log",
		Long: `Print the public verifier key of the audit signing key (audit.signing_key_file)
on one line: LOG_ID+HASH+KEY. Give it to the examiner, who keeps it apart from
the log and passes it to ` + "`custos audit verify --key`" + `. The signing key itself is
never printed; the key file must be mode 0600. --config reads
audit.signing_key_file from a configuration; --key-file names the file.

--generate makes the signing key first when the file does not exist yet
(mode 0600, its directory 0700), named --log-id (default custos- and the host
name; each replica keeps its own log and key), and then prints its verifier
key. An existing key file is never replaced.`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if (keyFile == "") == (cfgPath == "") {
				return usageError{errors.New("give one of --key-file FILE or --config FILE")}
			}
			if cfgPath != "" {
				cfg, err := config.Load(cfgPath)
				if err != nil {
					return reportConfigErrors(g, cfgPath, err)
				}
				if keyFile, err = configSigningKeyFile(cfg); err != nil {
					return fmt.Errorf("%s: %w", cfgPath, err)
				}
			}
			if generate {
				if logID == "" {
					logID = controlplane.DefaultLogID()
				}
				if _, err := audit.LoadSigningKey(keyFile); errors.Is(err, fs.ErrNotExist) {
					if _, err := audit.LoadOrCreateSigningKey(keyFile, logID, true); err != nil {
						return err
					}
				} else if err != nil {
					return err
				}
			} else if logID != "" {
				return usageError{errors.New("--log-id goes with --generate")}
			}
			vkey, err := audit.VerifierKeyFile(keyFile)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, vkey)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "the audit signing key file (audit.signing_key_file)")
	cmd.Flags().StringVar(&cfgPath, "config", "", "a configuration file: its audit.signing_key_file")
	cmd.Flags().BoolVar(&generate, "generate", false, "make the signing key when the file does not exist")
	cmd.Flags().StringVar(&logID, "log-id", "", "the log id of a generated key (default custos-HOSTNAME)")
	return cmd
}

// configSigningKeyFile returns audit.signing_key_file of cfg.
func configSigningKeyFile(cfg *config.Config) (string, error) {
	if cfg.Audit.SigningKeyFile == "" {
		return "", errors.New("audit.signing_key_file is not set")
	}
	return cfg.Audit.SigningKeyFile, nil
}

// kafkaTopics names what `custos audit verify --kafka` reads.
type kafkaTopics struct {
	Brokers     []string
	Events      string
	Checkpoints string
	// TLS, when set, connects to the brokers over TLS.
	TLS *tls.Config
}

// verifyKafka verifies the logs shipped to Kafka with the trusted verifier
// keys and the extra checkpoints (the log directory's, with --dir): every
// checkpoint first, then every event in (log id, index) order through
// audit.Checker (never in topic or partition order). It returns a summary
// per log id and the signed checkpoints it read, by log id, which --dir then
// checks the directory against (that is how a rewritten directory is
// caught). A failure in a log is an *audit.VerifyError. It is a variable so
// that a binary could be built without the shipper; --kafka is refused when
// it is nil.
var verifyKafka = func(ctx context.Context, t kafkaTopics, keys []string, extra [][]byte) ([]*audit.Summary, map[string][][]byte, error) {
	s, err := ship.ReadTopics(ctx, ship.Topics{Brokers: t.Brokers, EventsTopic: t.Events, CheckpointsTopic: t.Checkpoints, TLS: t.TLS})
	if err != nil {
		return nil, nil, fmt.Errorf("read the Kafka topics: %w", err)
	}
	cps := map[string][][]byte{}
	for id := range s.Logs {
		cps[id] = s.CheckpointsOf(id)
	}
	sums, err := s.Verify(keys, extra...)
	return sums, cps, err
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var (
		dir, brokers   string
		kafkaCA        string
		kafkaCert      string
		kafkaKey       string
		keyArgs        []string
		topics         kafkaTopics
		evTopic, cpTop string
	)
	cmd := &cobra.Command{
		Use:   "verify [--dir DIR] [--kafka BROKERS [--events-topic T --checkpoints-topic T]] --key VERIFIER...",
		Short: "Check that the audit log is intact: every event, every signed checkpoint",
		Long: `Verify an audit log without trusting it: every hash is recomputed from the
event bytes, every checkpoint's signature is checked with the verifier keys
you hold (following key rotations), each checkpoint must be consistent with
the earlier ones, and gaps, reordering, forks and a cut tail are found.

--key is repeatable, one verifier key per log id (LOG_ID+HASH+KEY, as
` + "`custos audit key`" + ` prints it), or @FILE to read one from a file.
--kafka reads the topics the shipper writes; with --dir too, the directory is
also checked against the checkpoints already shipped, which catches a
directory rewritten after the fact.

Exit status 0 and a summary when intact; 1 naming the log id, the first bad
index and why otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" && brokers == "" {
				return usageError{errors.New("give --dir DIR (the audit.dir) or --kafka BROKERS")}
			}
			keys, err := verifierKeys(keyArgs)
			if err != nil {
				return err
			}
			if len(keys) == 0 {
				return usageError{errors.New("--key VERIFIER is required: the verifier key `custos audit key` printed, held apart from the log")}
			}
			var shipped map[string][][]byte
			if brokers != "" {
				if verifyKafka == nil {
					return errors.New("--kafka: this custos is built without the Kafka shipper (audit/ship); verify --dir alone")
				}
				topics.Brokers = splitList(brokers)
				topics.Events, topics.Checkpoints = evTopic, cpTop
				if kafkaCA != "" || kafkaCert != "" {
					tc, err := controlplane.KafkaTLS(&config.KafkaTLS{CAFile: kafkaCA, CertFile: kafkaCert, KeyFile: kafkaKey})
					if err != nil {
						return fmt.Errorf("--kafka-ca/--kafka-cert: %w", err)
					}
					topics.TLS = tc
				}
				var extra [][]byte
				if dir != "" {
					if extra, err = audit.Checkpoints(nil, dir); err != nil {
						return fmt.Errorf("read the checkpoints of %s: %w", dir, err)
					}
				}
				sums, cps, err := verifyKafka(cmd.Context(), topics, keys, extra)
				if err != nil {
					return fmt.Errorf("NOT intact (kafka %s): %w", brokers, err)
				}
				for _, s := range sums {
					fmt.Fprintf(g.stdout, "%s (kafka topics %s, %s)\n", verifySummary(s, nil), topics.Events, topics.Checkpoints)
				}
				shipped = cps
			}
			if dir == "" {
				return nil
			}
			r, err := audit.OpenReader(nil, dir)
			if err != nil {
				return err
			}
			s, err := audit.Verify(dir, audit.VerifyOptions{Keys: keys, Checkpoints: shipped[r.ID()]})
			if err != nil {
				var ve *audit.VerifyError
				if errors.As(err, &ve) {
					return fmt.Errorf("NOT intact: %w", err)
				}
				return err
			}
			var last *audit.SignedCheckpoint
			if cps, err := r.Checkpoints(); err == nil {
				for i := range cps {
					if cps[i].Size == s.Covered {
						last = &cps[i]
					}
				}
			}
			fmt.Fprintf(g.stdout, "%s (%s)\n", verifySummary(s, last), dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the log directory (audit.dir)")
	cmd.Flags().StringArrayVar(&keyArgs, "key", nil, "a trusted verifier key, or @FILE holding one (repeatable: one per log id)")
	cmd.Flags().StringVar(&brokers, "kafka", "", "comma-separated Kafka brokers to read the shipped log from")
	cmd.Flags().StringVar(&evTopic, "events-topic", ship.DefaultEventsTopic, "the Kafka topic of events")
	cmd.Flags().StringVar(&cpTop, "checkpoints-topic", ship.DefaultCheckpointsTopic, "the Kafka topic of checkpoints")
	cmd.Flags().StringVar(&kafkaCA, "kafka-ca", "", "CA file that signs the brokers' certificates (connects over TLS)")
	cmd.Flags().StringVar(&kafkaCert, "kafka-cert", "", "client certificate for the brokers (mutual TLS; with --kafka-key)")
	cmd.Flags().StringVar(&kafkaKey, "kafka-key", "", "client key for the brokers")
	return cmd
}

// verifySummary is the one paragraph `audit verify` prints for an intact
// log; last is the checkpoint of size s.Covered, when known.
func verifySummary(s *audit.Summary, last *audit.SignedCheckpoint) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log %s: intact. %d events verified from their bytes; %d signed checkpoints verified, each consistent with the ones before",
		s.LogID, s.Events, s.Checkpoints)
	switch {
	case s.Checkpoints == 0:
		b.WriteString("; no checkpoint is signed yet, so no signature covers these events")
	case last != nil:
		fmt.Fprintf(&b, "; the latest (size %d, root %s) covers %d of %d events", last.Size, base64.StdEncoding.EncodeToString(last.Root[:]), s.Covered, s.Events)
	default:
		fmt.Fprintf(&b, "; the latest covers %d of %d events", s.Covered, s.Events)
	}
	if n := s.Events - s.Covered; n > 0 && s.Checkpoints > 0 {
		fmt.Fprintf(&b, " (the %d after it are intact as stored but not yet signed)", n)
	}
	fps := make([]string, len(s.Keys))
	for i, k := range s.Keys {
		fps[i] = keyFingerprint(k)
	}
	if len(fps) > 0 {
		fmt.Fprintf(&b, "; signed by %s", strings.Join(fps, ", then "))
	}
	if s.TornBytes > 0 {
		fmt.Fprintf(&b, "; %d bytes of a partly written tail follow the last event (never acknowledged)", s.TornBytes)
	}
	return b.String()
}

// verifierKeys reads --key values: a verifier key, or @FILE holding one. A
// signing key is refused without being quoted.
func verifierKeys(args []string) ([]string, error) {
	var keys []string
	for _, a := range args {
		k, from := a, "--key"
		if path, ok := strings.CutPrefix(a, "@"); ok {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, usageError{fmt.Errorf("--key @%s: %w", path, err)}
			}
			k, from = strings.TrimSpace(string(b)), "--key @"+path
		}
		if strings.HasPrefix(k, "PRIVATE+") {
			return nil, usageError{fmt.Errorf("%s is a signing key, not a verifier key: keep it secret and pass what `custos audit key` prints", from)}
		}
		if _, err := note.NewVerifier(k); err != nil {
			return nil, usageError{fmt.Errorf("%s is not a verifier key (LOG_ID+HASH+KEY, as `custos audit key` prints it)", from)}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keyFingerprint names a verifier key by the SHA-256 of its text, as an
// examiner can recompute it from the key they hold.
func keyFingerprint(vkey string) string {
	sum := sha256.Sum256([]byte(vkey))
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newAuditProofCmd(g *globals) *cobra.Command {
	var (
		dir, logID, verifyPath string
		index                  int64
		keyArgs                []string
	)
	cmd := &cobra.Command{
		Use:   "proof (--dir DIR [--log ID] --index N [--key VERIFIER] | --verify FILE --key VERIFIER)",
		Short: "Print one event with its inclusion proof and signed checkpoint, or check a saved one",
		Long: `Print, as JSON, event N of the log in DIR, its RFC 6962 inclusion proof and
the signed checkpoint that covers it: what GET /v1/audit/proof returns and
what an agent's x-custos-evidence: LOG_ID/INDEX points at. Anyone holding the
verifier key can check it offline, without the log. With --key the proof is
also checked here, and the line saying so goes to stderr (stdout stays the
proof, to save to a file).

--verify FILE (- for stdin) checks a saved proof with --key alone: exit 0 if
the event is in a checkpoint the key signed, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := verifierKeys(keyArgs)
			if err != nil {
				return err
			}
			if verifyPath != "" {
				if dir != "" || cmd.Flags().Changed("index") || logID != "" {
					return usageError{errors.New("--verify FILE checks a saved proof: give it with --key alone")}
				}
				if len(keys) == 0 {
					return usageError{errors.New("--verify needs --key VERIFIER: a proof is only as good as the key that checks it")}
				}
				return verifySavedProof(g, verifyPath, keys)
			}
			if dir == "" {
				return usageError{errors.New("--dir DIR is required (the audit.dir)")}
			}
			if !cmd.Flags().Changed("index") {
				return usageError{errors.New("--index N is required (the INDEX of x-custos-evidence: LOG_ID/INDEX)")}
			}
			if index < 0 {
				return usageError{fmt.Errorf("--index %d: an index is 0 or more", index)}
			}
			r, err := audit.OpenReader(nil, dir)
			if err != nil {
				return err
			}
			if logID != "" && logID != r.ID() {
				return fmt.Errorf("%s holds log %q, not %q", dir, r.ID(), logID)
			}
			p, err := proveFromDir(r, index, keys)
			if err != nil {
				return err
			}
			out, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\n", out)
			if len(keys) > 0 {
				e, cp, err := audit.VerifyProof(p, keys...)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stderr, "verified offline: event %d of log %s (%s) is in the checkpoint of size %d signed by the given key\n", e.Index, e.LogID, e.Kind, cp.Size)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the log directory (audit.dir)")
	cmd.Flags().StringVar(&logID, "log", "", "the log id (LOG_ID of x-custos-evidence); checked against the directory's")
	cmd.Flags().Int64Var(&index, "index", -1, "the event's index (INDEX of x-custos-evidence)")
	cmd.Flags().StringArrayVar(&keyArgs, "key", nil, "a verifier key, or @FILE holding one, to check the proof with")
	cmd.Flags().StringVar(&verifyPath, "verify", "", "check a saved proof (a file, or - for stdin) with --key")
	return cmd
}

// proveFromDir builds the proof of event index against the latest stored
// checkpoint that covers it (and, with keys, that one of them signed).
func proveFromDir(r *audit.Reader, index int64, keys []string) (*audit.Proof, error) {
	cps, err := r.Checkpoints()
	if err != nil {
		return nil, err
	}
	var cp *audit.SignedCheckpoint
	latest := int64(0)
	for i := range cps {
		latest = max(latest, cps[i].Size)
		if cps[i].Size <= index || (cp != nil && cps[i].Size <= cp.Size) {
			continue
		}
		if len(keys) > 0 {
			if _, err := audit.OpenCheckpoint(cps[i].Note, keys...); err != nil {
				continue
			}
		}
		cp = &cps[i]
	}
	rec, err := r.Read(index)
	if err != nil {
		return nil, err
	}
	if cp == nil {
		if index < latest {
			return nil, fmt.Errorf("no checkpoint covering index %d of log %s is signed by the given key", index, r.ID())
		}
		return nil, fmt.Errorf("index %d of log %s is not covered by a signed checkpoint yet (the latest covers %d events); a running log signs one within seconds", index, r.ID(), latest)
	}
	return r.Prove(*cp, index, rec)
}

// verifySavedProof checks a proof saved from `audit proof` or
// GET /v1/audit/proof with keys alone.
func verifySavedProof(g *globals, path string, keys []string) error {
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return usageError{fmt.Errorf("--verify: %w", err)}
		}
		defer f.Close()
		in = f
	}
	var p audit.Proof
	if err := json.NewDecoder(io.LimitReader(in, 8<<20)).Decode(&p); err != nil {
		return fmt.Errorf("%s is not a proof (JSON from `custos audit proof`): %w", path, err)
	}
	e, cp, err := audit.VerifyProof(&p, keys...)
	if err != nil {
		return fmt.Errorf("proof NOT verified: %w", err)
	}
	fmt.Fprintf(g.stdout, "proof verified: event %d of log %s (%s, request %s, %s) is in the checkpoint of size %d (root %s) signed by %s\n",
		e.Index, e.LogID, e.Kind, orDash(e.RequestID), e.Time.Format(timeLayout), cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]), signerFingerprint(cp.Note, keys))
	return nil
}

// signerFingerprint returns the fingerprint of the first of keys whose
// signature on the note verifies.
func signerFingerprint(msg []byte, keys []string) string {
	for _, k := range keys {
		if _, err := audit.OpenCheckpoint(msg, k); err == nil {
			return keyFingerprint(k)
		}
	}
	return "an unknown key"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeIndentedJSON writes v to w as indented JSON and a newline.
func writeIndentedJSON(w io.Writer, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}
