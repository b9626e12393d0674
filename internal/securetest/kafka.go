package securetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/internal/testkafka"
)

// Users of the broker's SASL_SSL listener.
const (
	// KafkaUser authenticates with SCRAM-SHA-512 and with PLAIN.
	KafkaUser = "catalog"
	// KafkaUser256 authenticates with SCRAM-SHA-256.
	KafkaUser256 = "catalog256"
	// kafkaAdmin is the broker's own user (inter-broker SCRAM-SHA-512).
	kafkaAdmin = "admin"
)

// kafkaStartTimeout bounds the broker's start on a loaded CI machine: a JVM start, storage
// format and KRaft election take 10-30 s on two busy cores.
const kafkaStartTimeout = 3 * time.Minute

// Kafka is a real Apache Kafka broker (KRaft, broker and controller in one JVM, from the jars
// `make deps` resolves) with one SASL_SSL listener on loopback: TLS with a certificate of the
// test CA (client certificates requested, and verified when one is sent) and SASL with
// SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN users that `kafka-storage format --add-scram` and the
// listener's JAAS configuration create; a second SASL_SSL listener (MTLSAddr) requires a client
// certificate as well. One broker serves a whole test binary: StartKafka
// starts it on first use, StopKafka (from TestMain) stops it.
type Kafka struct {
	// Addr is the SASL_SSL listener, host:port.
	Addr string
	// MTLSAddr is a second SASL_SSL listener that requires a client certificate of CA.
	MTLSAddr string
	// CA signs the broker's certificate and Client.
	CA *CA
	// Client is a client certificate the broker accepts (mutual TLS).
	Client Pair
	// Password is KafkaUser's password (SCRAM-SHA-512 and PLAIN); Password256 is KafkaUser256's.
	Password, Password256 string

	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the broker has exited
	exit   error         // its Wait error, once exited is closed
	out    *os.File
}

var (
	kafkaOnce sync.Once
	kafkaInst *Kafka
	kafkaErr  error
)

// StartKafka returns the test binary's SASL_SSL broker, starting it on first use. When it
// cannot start (no Java, no classpath, a port taken), the test is skipped on a laptop and
// fails in CI (testenv.Unavailable): `make deps` provides both.
func StartKafka(tb testing.TB) *Kafka {
	tb.Helper()
	kafkaOnce.Do(func() { kafkaInst, kafkaErr = startKafka(tb) })
	if kafkaErr != nil {
		testenv.Unavailable(tb, "a SASL_SSL Kafka broker started by the test", kafkaErr)
	}
	return kafkaInst
}

// StopKafka stops the broker if one was started and removes its files. Call it from TestMain
// after m.Run; the broker also dies with the test binary (parent-death signal).
func StopKafka() {
	if kafkaInst != nil {
		kafkaInst.stop()
	}
}

// Security is the adapter's security configuration for mechanism with its user (KafkaUser256
// for SCRAM-SHA-256, KafkaUser otherwise), the CA, and the client certificate when
// clientCert is true.
func (k *Kafka) Security(mechanism string, clientCert bool) kafka.SecurityConfig {
	sc := kafka.SecurityConfig{CAFile: k.CA.CertFile, SASLMechanism: mechanism, Username: KafkaUser, Password: k.Password}
	if mechanism == kafka.SASLSCRAMSHA256 {
		sc.Username, sc.Password = KafkaUser256, k.Password256
	}
	if clientCert {
		sc.CertFile, sc.KeyFile = k.Client.CertFile, k.Client.KeyFile
	}
	return sc
}

// Cluster is the broker as a testkafka.Cluster whose clients authenticate with SCRAM-SHA-512.
func (k *Kafka) Cluster(tb testing.TB) testkafka.Cluster {
	tb.Helper()
	sec, err := kafka.NewSecurity(k.Security(kafka.SASLSCRAMSHA512, false))
	if err != nil {
		tb.Fatal(err)
	}
	return testkafka.Cluster{Name: "sasl_ssl", Brokers: []string{k.Addr}, Security: sec}
}

func startKafka(tb testing.TB) (*Kafka, error) {
	javaBin, classpath, err := kafkaJVM()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "catalog-sasl-kafka-")
	if err != nil {
		return nil, err
	}
	k := &Kafka{dir: dir, Password: secret(), Password256: secret()}
	ok := false
	defer func() {
		if !ok {
			k.stop()
		}
	}()
	k.CA = NewCA(tb, dir, "kafka-test")
	broker := k.CA.Issue(tb, "broker", "127.0.0.1", "localhost")
	k.Client = k.CA.Issue(tb, "client", "catalog-client")
	port, mport, cport := testenv.FreePort(tb), testenv.FreePort(tb), testenv.FreePort(tb)
	k.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	k.MTLSAddr = fmt.Sprintf("127.0.0.1:%d", mport)

	// A PEM key store holds the private key and the certificate chain in one file.
	keyPEM, err := os.ReadFile(broker.KeyFile)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(broker.CertFile)
	if err != nil {
		return nil, err
	}
	keystore := filepath.Join(dir, "broker-keystore.pem")
	if err := os.WriteFile(keystore, append(keyPEM, certPEM...), 0o600); err != nil {
		return nil, err
	}
	adminPassword := secret()
	props := filepath.Join(dir, "server.properties")
	scram := func(user, password string) string {
		return fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`, user, password)
	}
	plain := fmt.Sprintf(`org.apache.kafka.common.security.plain.PlainLoginModule required username="%s" password="%s" user_%s="%s" user_%s="%s";`,
		kafkaAdmin, adminPassword, kafkaAdmin, adminPassword, KafkaUser, k.Password)
	conf := strings.Join([]string{
		"process.roles=broker,controller",
		"node.id=1",
		fmt.Sprintf("controller.quorum.voters=1@127.0.0.1:%d", cport),
		fmt.Sprintf("listeners=SASL_SSL://127.0.0.1:%d,MTLS://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", port, mport, cport),
		fmt.Sprintf("advertised.listeners=SASL_SSL://127.0.0.1:%d,MTLS://127.0.0.1:%d", port, mport),
		"controller.listener.names=CONTROLLER",
		"listener.security.protocol.map=SASL_SSL:SASL_SSL,MTLS:SASL_SSL,CONTROLLER:PLAINTEXT",
		"inter.broker.listener.name=SASL_SSL",
		"sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
		"sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
		"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=" + scram(kafkaAdmin, adminPassword),
		"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=" + scram(kafkaAdmin, adminPassword),
		"listener.name.sasl_ssl.plain.sasl.jaas.config=" + plain,
		"listener.name.mtls.scram-sha-512.sasl.jaas.config=" + scram(kafkaAdmin, adminPassword),
		"listener.name.mtls.scram-sha-256.sasl.jaas.config=" + scram(kafkaAdmin, adminPassword),
		"listener.name.mtls.plain.sasl.jaas.config=" + plain,
		"listener.name.mtls.ssl.client.auth=required",
		"ssl.keystore.type=PEM",
		"ssl.keystore.location=" + keystore,
		"ssl.truststore.type=PEM",
		"ssl.truststore.location=" + k.CA.CertFile,
		"ssl.client.auth=requested",
		"log.dirs=" + filepath.Join(dir, "data"),
		"num.partitions=3",
		"auto.create.topics.enable=true",
		"offsets.topic.replication.factor=1",
		"offsets.topic.num.partitions=3",
		"transaction.state.log.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"share.coordinator.state.topic.replication.factor=1",
		"share.coordinator.state.topic.min.isr=1",
		"group.initial.rebalance.delay.ms=0",
		"delete.topic.enable=true",
	}, "\n") + "\n"
	if err := os.WriteFile(props, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	jvm := []string{"-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + filepath.Join(repoRoot(), "scripts", "deps", "kafka", "log4j2.properties"),
		"-Dkafka.logs.dir=" + filepath.Join(dir, "logs"), "-cp", classpath}
	format := exec.Command(javaBin, append(jvm, "kafka.tools.StorageTool", "format", "--cluster-id="+newClusterID(), "-c", props,
		"--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", kafkaAdmin, adminPassword),
		"--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", KafkaUser, k.Password),
		"--add-scram", fmt.Sprintf("SCRAM-SHA-256=[name=%s,password=%s]", kafkaAdmin, adminPassword),
		"--add-scram", fmt.Sprintf("SCRAM-SHA-256=[name=%s,password=%s]", KafkaUser256, k.Password256))...)
	if out, err := format.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kafka-storage format: %w: %s", err, lastLines(out, 10))
	}
	k.out, err = os.Create(filepath.Join(dir, "kafka.out"))
	if err != nil {
		return nil, err
	}
	k.cmd = exec.Command(javaBin, append(jvm, "kafka.Kafka", props)...)
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	// The broker must not outlive a test binary that dies without running TestMain's stop.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the broker: %w", err)
	}
	k.exited = make(chan struct{})
	go func() { k.exit = k.cmd.Wait(); close(k.exited) }()
	cfg := k.Cluster(tb).Config()
	deadline := time.Now().Add(kafkaStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := kafka.Ping(ctx, cfg)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-k.exited:
			k.cmd = nil
			return nil, fmt.Errorf("the broker exited (%w): %s", k.exit, k.logTail())
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no SASL_SSL metadata on %s after %s (%w): %s", k.Addr, kafkaStartTimeout, err, k.logTail())
		}
	}
	ok = true
	return k, nil
}

// kafkaJVM asks scripts/deps.sh for the Java binary and the broker's classpath, resolving
// them as `make deps` does (the jars come from ~/.m2 once `make deps` ran).
func kafkaJVM() (javaBin, classpath string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(), "scripts", "deps.sh"), "jvm", "kafka")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("scripts/deps.sh jvm kafka: %w: %s", err, lastLines(stderr.Bytes(), 5))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[0] == "" || lines[1] == "" {
		return "", "", fmt.Errorf("scripts/deps.sh jvm kafka printed %q, want the java binary and the classpath", out)
	}
	return lines[0], lines[1], nil
}

func (k *Kafka) stop() {
	if k.cmd != nil {
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-k.exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
			<-k.exited
		}
		k.cmd = nil
	}
	if k.out != nil {
		_ = k.out.Close()
	}
	_ = os.RemoveAll(k.dir)
}

// logTail is the end of the broker's log, for a failed start.
func (k *Kafka) logTail() string {
	b, _ := os.ReadFile(filepath.Join(k.dir, "logs", "server.log"))
	if len(b) == 0 {
		b, _ = os.ReadFile(filepath.Join(k.dir, "kafka.out"))
	}
	return lastLines(b, 15)
}

func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// secret is a random password, distinct per run, so tests can grep output for it.
func secret() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "pw-" + hex.EncodeToString(b)
}

// repoRoot is the checkout this package was built from.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// newClusterID is a random Kafka cluster id (base64url of 16 bytes). It is passed as
// --cluster-id=ID because the tool's argument parser reads a value that starts with "-" (one
// id in 64) as an option, which failed the broker's start now and then.
func newClusterID() string {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return base64.RawURLEncoding.EncodeToString(id)
}
