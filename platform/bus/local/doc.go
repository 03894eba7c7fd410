// Package local is agentbus's embedded event bus: EventBridge-style rules
// route each published CloudEvent to queues with SQS-style semantics
// (visibility timeout, receive count, redrive to a dead-letter queue, delayed
// redelivery), durable in one journal file, or only in memory for tests.
//
// An event is matched (platform/pattern) against the same EventBridge
// envelope JSON an SQS target would receive on AWS, so a rule behaves the same
// in both modes; the queue stores that envelope. Like EventBridge, an event
// that matches no rule is dropped, and an event that matches two rules
// targeting one queue is delivered to it twice.
//
// Durability: Publish returns only after the event is committed to every
// matching queue in one transaction; a message is handed to a receiver only
// after its receive count is committed. A process killed at any point loses no
// acknowledged publish, and after a restart every unacknowledged message is
// visible again at once (its handler died with the process), keeping its
// receive count. Each group commit is one checksummed frame appended to the
// journal with one write; by default (Synchronous "NORMAL") the file is
// fsynced in the background, so a commit survives a process crash, but the
// commits of the last second or so before a power loss or kernel crash may
// be lost (replay cuts the torn tail off; the rest stays consistent); set
// Options.Synchronous to "FULL" to fsync every commit.
//
// All queue state is kept in memory too (the file is its journal), so the
// backlog of every queue must fit in memory. One process owns a bus file at
// a time; a second Open of the same file fails with ErrInUse.
package local
