// Package kafkatest holds smoke tests of the real Kafka broker.
package kafkatest
