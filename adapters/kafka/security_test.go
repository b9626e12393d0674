package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/securetest"
	"github.com/marketplace/catalog/internal/testkafka"
)

func TestMain(m *testing.M) {
	code := m.Run()
	securetest.StopKafka()
	os.Exit(code)
}

func TestSecurityConfigNeverShowsThePassword(t *testing.T) {
	sc := kafka.SecurityConfig{CAFile: "/ca.pem", SASLMechanism: kafka.SASLSCRAMSHA512, Username: "svc", Password: "pw-never-shown"}
	sec, err := kafka.NewSecurity(kafka.SecurityConfig{SASLMechanism: kafka.SASLPlain, Username: "svc", Password: "pw-never-shown"})
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("kafka", "config", sc, "security", sec)
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", sc, sc, sc, sc), fmt.Sprint(sec), logged.String(),
		fmt.Sprint(kafka.Config{Brokers: []string{"b:9093"}, Security: sec})} {
		if strings.Contains(s, "pw-never-shown") {
			t.Fatalf("the password is printed: %s", s)
		}
	}
	if !strings.Contains(sc.String(), `SASL SCRAM-SHA-512 as "svc"`) || !strings.Contains(sc.String(), "TLS (CA /ca.pem)") {
		t.Errorf("description %q", sc.String())
	}
}

// TestSecurityConfiguresBothClientsAlike: one Security gives Sarama and franz-go the same
// TLS and SASL settings; nil leaves both plaintext.
func TestSecurityConfiguresBothClientsAlike(t *testing.T) {
	for _, mech := range []string{kafka.SASLPlain, kafka.SASLSCRAMSHA256, kafka.SASLSCRAMSHA512} {
		sec, err := kafka.NewSecurity(kafka.SecurityConfig{TLS: true, SASLMechanism: mech, Username: "u", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		sc := kafka.Config{Brokers: []string{"b:9093"}, Security: sec}.ProducerConfig()
		if !sc.Net.TLS.Enable || sc.Net.TLS.Config == nil || !sc.Net.SASL.Enable || string(sc.Net.SASL.Mechanism) != mech ||
			sc.Net.SASL.User != "u" || sc.Net.SASL.Password != "p" {
			t.Errorf("%s: Sarama config TLS=%v SASL=%v %s %s", mech, sc.Net.TLS.Enable, sc.Net.SASL.Enable, sc.Net.SASL.Mechanism, sc.Net.SASL.User)
		}
		if strings.HasPrefix(mech, "SCRAM") {
			if sc.Net.SASL.SCRAMClientGeneratorFunc == nil {
				t.Fatalf("%s: no SCRAM client for Sarama", mech)
			}
			cl := sc.Net.SASL.SCRAMClientGeneratorFunc()
			if err := cl.Begin("u", "p", ""); err != nil {
				t.Fatal(err)
			}
			if first, err := cl.Step(""); err != nil || !strings.HasPrefix(first, "n,,n=u,r=") {
				t.Errorf("%s: first SCRAM message %q, %v", mech, first, err)
			}
		}
		if err := sc.Validate(); err != nil {
			t.Errorf("%s: Sarama rejects the config: %v", mech, err)
		}
		if n := len(sec.Opts()); n != 2 {
			t.Errorf("%s: %d franz-go options, want TLS and SASL", mech, n)
		}
	}
	var none *kafka.Security
	if sc := (kafka.Config{Brokers: []string{"b:9092"}}).ProducerConfig(); sc.Net.TLS.Enable || sc.Net.SASL.Enable || len(none.Opts()) != 0 {
		t.Error("no security must leave both clients plaintext")
	}
	for _, bad := range []kafka.SecurityConfig{
		{SASLMechanism: "GSSAPI", Username: "u", Password: "p"}, {SASLMechanism: kafka.SASLPlain, Username: "u"},
		{Username: "u", Password: "p"}, {CertFile: "/c.pem"}, {CAFile: "/no/such/ca.pem"},
	} {
		if _, err := kafka.NewSecurity(bad); err == nil {
			t.Errorf("NewSecurity(%v) accepted", bad)
		}
	}
}

// TestSASLSSLCluster runs every client of the adapter through a real SASL_SSL listener with
// each mechanism: topic creation and metadata (kadm), the relay's pipelined producer and
// watermill-kafka's Sarama producer, the projector's consumer group, the event log a Kafka rebuild reads, and the operator's stats.
func TestSASLSSLCluster(t *testing.T) {
	k := securetest.StartKafka(t)
	for _, tc := range []struct {
		mech       string
		clientCert bool
	}{{kafka.SASLSCRAMSHA512, true}, {kafka.SASLSCRAMSHA256, false}, {kafka.SASLPlain, false}} {
		t.Run(tc.mech, func(t *testing.T) {
			sec, err := kafka.NewSecurity(k.Security(tc.mech, tc.clientCert))
			if err != nil {
				t.Fatal(err)
			}
			addr := k.Addr
			if tc.clientCert {
				addr = k.MTLSAddr // requires the certificate: proves it is sent
			}
			c := testkafka.Cluster{Name: "sasl_ssl", Brokers: []string{addr}, Security: sec}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := kafka.Ping(ctx, c.Config()); err != nil {
				t.Fatalf("ping: %v", err)
			}
			topic := testkafka.CreateTopic(t, c, "secure", 3)

			// The relay's pipelined producer (franz-go), then watermill-kafka's (Sarama).
			pub, err := kafka.NewPipelinedPublisher(c.Config(), kafka.PublisherConfig{}, quietLog())
			if err != nil {
				t.Fatalf("pipelined publisher: %v", err)
			}
			defer pub.Close()
			events := makeEvents(t, 1) // a product's two events: one through each producer
			msg, err := envelope.Marshal(events[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(topic, msg); err != nil {
				t.Fatalf("pipelined publish: %v", err)
			}
			spub, err := kafka.NewPublisher(c.Config(), quietLog())
			if err != nil {
				t.Fatalf("sarama publisher: %v", err)
			}
			defer spub.Close()
			smsg, err := envelope.Marshal(events[1])
			if err != nil {
				t.Fatal(err)
			}
			if err := spub.Publish(topic, smsg); err != nil {
				t.Fatalf("sarama publish: %v", err)
			}

			// The projector's consumer group.
			_, ch := newConcurrentSub(t, c, topic, kafka.ConcurrentSubscriberConfig{ConsumerGroup: topic + "-g", FromOldest: true})
			for _, sent := range []*message.Message{msg, smsg} {
				got := receive(t, ch, time.Minute)
				got.Ack()
				if got.UUID != sent.UUID || got.Metadata.Get(envelope.MetaAggregateID) != events[0].AggregateID.String() {
					t.Fatalf("received %s %v, want %s (in publish order)", got.UUID, got.Metadata, sent.UUID)
				}
			}

			// The event log of a Kafka rebuild.
			l := newEventLog(t, c, topic)
			ends, err := l.EndOffsets(ctx)
			if err != nil || sum(ends) != int64(len(events)) {
				t.Fatalf("end offsets %v, %v", ends, err)
			}
			var read []product.Event
			if _, _, err := l.Read(ctx, rebuild.Offsets{}, ends, func(b []product.Event, _ rebuild.Offsets) error { read = append(read, b...); return nil }); err != nil || len(read) != len(events) {
				t.Fatalf("event log read %v, %v", read, err)
			}

			// The operator's stats.
			st, err := kafka.NewOpsStats(c.Config())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			offs, err := st.TopicOffsets(ctx, topic)
			var depth int64
			for _, p := range offs {
				depth += p.End - p.Start
			}
			if err != nil || depth != int64(len(events)) {
				t.Fatalf("topic depth %d, %v", depth, err)
			}
		})
	}
}

// TestWrongSecurityFailsFastWithTheSettingToFix: a wrong password, a plaintext client, an
// untrusted certificate and a client certificate of another CA all fail within seconds (the
// clients do not retry them) with a line that names what to check, never the password.
func TestWrongSecurityFailsFastWithTheSettingToFix(t *testing.T) {
	k := securetest.StartKafka(t)
	other := securetest.NewCA(t, t.TempDir(), "other")
	stranger := other.Issue(t, "stranger", "stranger")
	const wrong = "pw-wrong-never-shown"
	withPassword := func(sc kafka.SecurityConfig, pw string) kafka.SecurityConfig { sc.Password = pw; return sc }
	for name, tc := range map[string]struct {
		sc   kafka.SecurityConfig
		want string
		mtls bool // against the listener that requires a client certificate
	}{
		"wrong password":         {withPassword(k.Security(kafka.SASLSCRAMSHA512, false), wrong), "SASL authentication failed", false},
		"wrong SCRAM-256 secret": {withPassword(k.Security(kafka.SASLSCRAMSHA256, false), wrong), "SASL authentication failed", false},
		"wrong PLAIN password":   {withPassword(k.Security(kafka.SASLPlain, false), wrong), "SASL authentication failed", false},
		"no TLS":                 {kafka.SecurityConfig{SASLMechanism: kafka.SASLSCRAMSHA512, Username: securetest.KafkaUser, Password: k.Password}, "set KAFKA_TLS=true", false},
		"untrusted certificate":  {kafka.SecurityConfig{TLS: true, SASLMechanism: kafka.SASLSCRAMSHA512, Username: securetest.KafkaUser, Password: k.Password}, "KAFKA_TLS_CA_FILE", false},
		"no client certificate":  {k.Security(kafka.SASLSCRAMSHA512, false), "client certificate", true},
		"client cert of another CA": {kafka.SecurityConfig{CAFile: k.CA.CertFile, CertFile: stranger.CertFile, KeyFile: stranger.KeyFile,
			SASLMechanism: kafka.SASLSCRAMSHA512, Username: securetest.KafkaUser, Password: k.Password}, "client certificate", true},
	} {
		t.Run(name, func(t *testing.T) {
			sec, err := kafka.NewSecurity(tc.sc)
			if err != nil {
				t.Fatal(err)
			}
			addr := k.Addr
			if tc.mtls {
				addr = k.MTLSAddr
			}
			cfg := kafka.Config{Brokers: []string{addr}, Security: sec}
			// Far above the few hundred milliseconds a refusal takes, far below the minutes a
			// retrying client would hang.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err = kafka.Ping(ctx, cfg)
			if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ping after %s: %v; want a prompt error containing %q", time.Since(start), err, tc.want)
			}
			if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), k.Password) {
				t.Fatalf("the password is in the error: %v", err)
			}
		})
	}
	// The producers give up too instead of hanging: the relay's pipelined one (whose failed
	// publish the relay retries) and watermill-kafka's (Sarama).
	sec, err := kafka.NewSecurity(withPassword(k.Security(kafka.SASLSCRAMSHA512, false), wrong))
	if err != nil {
		t.Fatal(err)
	}
	pipelined := make(chan error, 1)
	go func() {
		pub, err := kafka.NewPipelinedPublisher(kafka.Config{Brokers: []string{k.Addr}, Security: sec}, kafka.PublisherConfig{DeliveryTimeout: 5 * time.Second}, quietLog())
		if err == nil {
			err = pub.Publish("secure.never", message.NewMessage("x", []byte("{}")))
			_ = pub.Close()
		}
		pipelined <- err
	}()
	select {
	case err := <-pipelined:
		if err == nil || !strings.Contains(err.Error(), "SASL") || strings.Contains(err.Error(), wrong) {
			t.Fatalf("pipelined publisher with a wrong password: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the pipelined publisher with a wrong password hangs")
	}
	done := make(chan error, 1)
	go func() {
		pub, err := kafka.NewPublisher(kafka.Config{Brokers: []string{k.Addr}, Security: sec}, quietLog())
		if err == nil {
			err = pub.Publish("secure.never", message.NewMessage("x", []byte("{}")))
			_ = pub.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), sarama.ErrSASLAuthenticationFailed.Error()) {
			t.Fatalf("sarama with a wrong password: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("sarama with a wrong password hangs")
	}
}
