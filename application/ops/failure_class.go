package ops

// FailureClass is the kind of a projection failure, written into a dead letter's
// DLQHeaderErrorClass. The projector classifies errors into these classes; the DLQ tooling
// filters and counts by them. Both read them from here so the wire values have one owner.
type FailureClass string

// Failure classes. Only ClassTransient is retried; ClassCanceled is neither retried nor
// dead-lettered (the message is redelivered after a restart); every other class is permanent.
const (
	ClassNone        FailureClass = ""
	ClassTransient   FailureClass = "transient"
	ClassCanceled    FailureClass = "canceled"
	ClassUndecodable FailureClass = "undecodable"
	ClassUnsupported FailureClass = "unsupported"
	ClassValidation  FailureClass = "validation"
	ClassRejected    FailureClass = "rejected"
	ClassPanic       FailureClass = "panic"
)

// DeadLetterClasses are the classes a message can be dead-lettered with, for metrics that
// start every class at zero and for the DLQ tooling's filters.
func DeadLetterClasses() []FailureClass {
	return []FailureClass{ClassUndecodable, ClassUnsupported, ClassValidation, ClassRejected, ClassPanic}
}

// Permanent reports whether retrying cannot help.
func (c FailureClass) Permanent() bool {
	return c != ClassNone && c != ClassTransient && c != ClassCanceled
}
