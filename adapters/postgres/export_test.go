package postgres

import "github.com/ThreeDotsLabs/watermill"

// SessionEndLogger exposes the relay's Watermill logger filter to the external tests.
func SessionEndLogger(l watermill.LoggerAdapter) watermill.LoggerAdapter { return sessionEndLogger{l} }

// RelayHorizon is the relay's visibility horizon as an SQL expression, for the external tests.
const RelayHorizon = relayHorizon
