// Package kafkatest runs a real Apache Kafka broker for tests: Kafka
// Version from Maven Central (the checked-in pom.xml, fetched once with
// `mvn dependency:copy-dependencies` into a cache outside the repository),
// on the machine's Java 17 or later, as a single KRaft node (broker and
// controller in one JVM) on loopback ports chosen free.
//
// Start is slow (a JVM on two cores takes seconds), so a test package starts
// one broker with Shared and stops it in TestMain with StopShared. Without
// Java or Maven, Shared skips the test with one line saying what to install,
// except when the environment has CI=true, where it fails.
package kafkatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// Version is the Kafka release pom.xml fetches.
const Version = "4.4.0"

//go:embed pom.xml
var pom []byte

// Install is the one line that says how to get what the broker needs.
const Install = "needs Java 17+ and Maven: apt-get install openjdk-17-jre-headless maven"

// Broker is a running single-node Kafka.
type Broker struct {
	// Addr is the PLAINTEXT listener, host:port, for clients.
	Addr string

	dir        string // config, data and the broker's log
	lib        string // the jars
	port, ctrl int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Available returns nil when java (17 or later) and mvn can be run, else
// an error whose message is one line saying what is missing and how to get
// it.
func Available() error {
	java, err := exec.LookPath("java")
	if err != nil {
		return errors.New("no java: " + Install)
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return errors.New("no mvn: " + Install)
	}
	out, err := exec.Command(java, "-version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("java -version: %v: %s", err, Install)
	}
	m := regexp.MustCompile(`version "(\d+)`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("java -version says no version: %s", Install)
	}
	if v, _ := strconv.Atoi(string(m[1])); v < 17 {
		return fmt.Errorf("java %d is older than 17: %s", v, Install)
	}
	return nil
}

// CacheDir is where the jars are kept: $CUSTOS_KAFKA_CACHE, else
// custos-kafka under the user's cache directory (~/.cache), in a folder
// named after pom.xml's hash so that a changed pom fetches again.
func CacheDir() (string, error) {
	base := os.Getenv("CUSTOS_KAFKA_CACHE")
	if base == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(c, "custos-kafka")
	}
	sum := sha256.Sum256(pom)
	return filepath.Join(base, Version+"-"+hex.EncodeToString(sum[:6])), nil
}

// Fetch returns the directory of Kafka's jars, fetching them with Maven the
// first time.
func Fetch(ctx context.Context) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	lib := filepath.Join(dir, "lib")
	if _, err := os.Stat(filepath.Join(lib, "kafka_2.13-"+Version+".jar")); err == nil {
		return lib, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "fetch-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "pom.xml"), pom, 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-f", filepath.Join(tmp, "pom.xml"),
		"dependency:copy-dependencies", "-DoutputDirectory="+filepath.Join(tmp, "lib"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("fetch Kafka %s with Maven: %v\n%s", Version, err, tail(out, 40))
	}
	if err := os.Rename(filepath.Join(tmp, "lib"), lib); err != nil {
		// Another process fetched it meanwhile.
		if _, serr := os.Stat(filepath.Join(lib, "kafka_2.13-"+Version+".jar")); serr != nil {
			return "", err
		}
	}
	return lib, nil
}

// Start fetches Kafka if needed, formats a new KRaft node in dir (created if
// missing) with a random cluster id, starts it and waits until it answers.
func Start(ctx context.Context, dir string) (*Broker, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	lib, err := Fetch(ctx)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ctrl, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &Broker{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, lib: lib, port: port, ctrl: ctrl}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(b.path("server.properties"), []byte(b.properties()), 0o644); err != nil {
		return nil, err
	}
	id := make([]byte, 16)
	rand.Read(id)
	clusterID := base64.RawURLEncoding.EncodeToString(id)
	format := b.java(ctx, "kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", clusterID, "-c", b.path("server.properties"))
	if out, err := format.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kafka storage format: %v\n%s", err, tail(out, 30))
	}
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Broker) path(name string) string { return filepath.Join(b.dir, name) }

func (b *Broker) properties() string {
	return fmt.Sprintf(`process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.voters=1@127.0.0.1:%[2]d
log.dirs=%[3]s
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
`, b.port, b.ctrl, b.path("data"))
}

// java returns a JVM command running class main with Kafka's jars, tuned to
// start fast and small.
func (b *Broker) java(ctx context.Context, main string, args ...string) *exec.Cmd {
	jvm := []string{
		"-Xms128m", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Djava.awt.headless=true",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-cp", filepath.Join(b.lib, "*"), main,
	}
	cmd := exec.CommandContext(ctx, "java", append(jvm, args...)...)
	cmd.Dir = b.dir
	return cmd
}

// start runs the broker and waits until it answers metadata requests.
func (b *Broker) start(ctx context.Context) error {
	logf, err := os.OpenFile(b.path("broker.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// Not tied to ctx: the broker outlives the call that starts it.
	cmd := b.java(context.Background(), "kafka.Kafka", b.path("server.properties"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that Kill reaches the whole JVM; killed
	// with the test binary if that dies first (a test timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start kafka: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	b.mu.Lock()
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()
	if err := b.waitReady(ctx, exited); err != nil {
		b.Kill()
		log, _ := os.ReadFile(b.path("broker.log"))
		return fmt.Errorf("kafka did not start: %w\n%s", err, tail(log, 30))
	}
	return nil
}

func (b *Broker) waitReady(ctx context.Context, exited chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(b.Addr), Timeout: 2 * time.Second, Transport: &kafka.Transport{DialTimeout: time.Second}}
	for {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
		if err == nil && len(md.Brokers) > 0 {
			return nil
		}
		select {
		case <-exited:
			return errors.New("the JVM exited")
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Kill ends the broker with SIGKILL, as a crash would, and waits for it.
func (b *Broker) Kill() {
	b.signal(syscall.SIGKILL, 0)
}

// Stop asks the broker to shut down (SIGTERM) and waits for it, killing it
// after 30 seconds.
func (b *Broker) Stop() {
	b.signal(syscall.SIGTERM, 30*time.Second)
}

func (b *Broker) signal(sig syscall.Signal, grace time.Duration) {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	syscall.Kill(-cmd.Process.Pid, sig)
	if grace > 0 {
		select {
		case <-exited:
			return
		case <-time.After(grace):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	<-exited
}

// Restart starts the broker again on the same ports and data (after Kill or
// Stop; a running broker is stopped first) and waits until it answers.
func (b *Broker) Restart(ctx context.Context) error {
	b.Stop()
	return b.start(ctx)
}

// Dir is the directory holding the broker's configuration, data and log
// (broker.log).
func (b *Broker) Dir() string { return b.dir }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, lines int) string {
	ls := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return string(bytes.Join(ls, []byte("\n")))
}

var shared struct {
	once sync.Once
	b    *Broker
	dir  string
	err  error
}

// Shared returns the test binary's broker, starting it on first use. Without
// Java or Maven it skips t with one line (Install), or fails it when the
// environment has CI=true. Call StopShared from TestMain after m.Run.
func Shared(t testing.TB) *Broker {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("real Kafka tests: %v", err)
		}
		t.Skipf("real Kafka tests skipped: %v", err)
	}
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "custos-kafka-")
		if shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		shared.b, shared.err = Start(ctx, shared.dir)
	})
	if shared.err != nil {
		t.Fatalf("start Kafka %s: %v", Version, shared.err)
	}
	return shared.b
}

// StopShared stops the broker Shared started, if any, and removes its
// directory.
func StopShared() {
	if shared.b != nil {
		shared.b.Stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// Topic returns a topic name unique to the test, for tests that share a
// broker.
func Topic(t testing.TB, suffix string) string {
	return strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()) + "." + suffix
}
