package ship

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Default topic names (CONTRACT.md, "Audit events").
const (
	DefaultEventsTopic      = "custos.audit.events"
	DefaultCheckpointsTopic = "custos.audit.checkpoints"
)

// Topics names a Kafka cluster and the two audit topics in it.
type Topics struct {
	// Brokers are bootstrap addresses (host:port).
	Brokers []string
	// EventsTopic and CheckpointsTopic default to DefaultEventsTopic and
	// DefaultCheckpointsTopic.
	EventsTopic      string
	CheckpointsTopic string
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// DialTimeout bounds each connection attempt (5s if zero).
	DialTimeout time.Duration
}

func (t Topics) withDefaults() (Topics, error) {
	if len(t.Brokers) == 0 {
		return t, errors.New("kafka: no brokers")
	}
	if t.EventsTopic == "" {
		t.EventsTopic = DefaultEventsTopic
	}
	if t.CheckpointsTopic == "" {
		t.CheckpointsTopic = DefaultCheckpointsTopic
	}
	if t.EventsTopic == t.CheckpointsTopic {
		return t, errors.New("kafka: the events and checkpoints topics must differ")
	}
	if t.DialTimeout <= 0 {
		t.DialTimeout = 5 * time.Second
	}
	return t, nil
}

func (t Topics) transport() *kafka.Transport {
	return &kafka.Transport{
		DialTimeout: t.DialTimeout,
		TLS:         t.TLS,
		ClientID:    "custos",
		// A restarted or replaced broker is found again soon.
		MetadataTTL: 2 * time.Second,
	}
}

func (t Topics) dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: t.DialTimeout, TLS: t.TLS, ClientID: "custos", DualStack: true}
}

func (t Topics) client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(t.Brokers...), Transport: t.transport()}
}

// TopicSettings are the settings CreateTopics gives both topics.
type TopicSettings struct {
	// Partitions of the events topic (the checkpoints topic has one); 1 if
	// zero.
	Partitions int
	// ReplicationFactor is 3 in production (1 for a single test broker).
	ReplicationFactor int
	// MinInsyncReplicas is 2 in production (1 for a single test broker).
	MinInsyncReplicas int
}

// TopicConfig returns the topic-level configuration docs/audit.md
// recommends for evidence: nothing expires or is compacted away, a write is
// acknowledged by at least minISR replicas, and an out-of-sync replica never
// becomes leader (which would drop acknowledged events).
func TopicConfig(minISR int) map[string]string {
	return map[string]string{
		"retention.ms":                   "-1",
		"retention.bytes":                "-1",
		"cleanup.policy":                 "delete",
		"min.insync.replicas":            strconv.Itoa(minISR),
		"unclean.leader.election.enable": "false",
	}
}

// CreateTopics creates the events and checkpoints topics with TopicConfig;
// topics that exist already are left as they are.
func CreateTopics(ctx context.Context, t Topics, s TopicSettings) error {
	t, err := t.withDefaults()
	if err != nil {
		return err
	}
	if s.Partitions <= 0 {
		s.Partitions = 1
	}
	if s.ReplicationFactor <= 0 {
		s.ReplicationFactor = 1
	}
	if s.MinInsyncReplicas <= 0 {
		s.MinInsyncReplicas = 1
	}
	var entries []kafka.ConfigEntry
	for k, v := range TopicConfig(s.MinInsyncReplicas) {
		entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	resp, err := t.client().CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: t.EventsTopic, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor, ConfigEntries: entries},
		{Topic: t.CheckpointsTopic, NumPartitions: 1, ReplicationFactor: s.ReplicationFactor, ConfigEntries: entries},
	}})
	if err != nil {
		return fmt.Errorf("create topics %s, %s: %w", t.EventsTopic, t.CheckpointsTopic, err)
	}
	for topic, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	return nil
}
