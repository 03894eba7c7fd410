// Package pattern implements the Amazon EventBridge event-pattern language:
// compiling (and validating) patterns, matching one pattern against an event,
// and matching many named rules at once through an index whose cost does not
// grow with the number of rules.
//
// The package is pure computation: no I/O, no context, no globals. It is
// written by hand because no Go module implements the whole language (quamina
// lacks suffix, numeric, cidr and $or and is not on the module proxy).
//
// # Semantics
//
// Matching follows what AWS answers (and what AWS's own engine, event-ruler,
// does): a pattern is a conjunction of fields; each field lists alternatives;
// a field matches when any leaf value at its path matches any alternative. An
// event's arrays match when any element matches, and fields matched inside
// one array of objects must come from the same element. Paths are joined
// with "." on both sides, so {"a.b": [1]} and {"a": {"b": [1]}} are the same
// field. A missing field is not null; numbers never match strings or
// booleans; numbers compare by value (300.0 equals 300); anything-but never
// matches a missing field. See docs/patterns.md for the full language.
//
// # Concurrency
//
// A compiled *Pattern is immutable and safe for concurrent use. A *Matcher
// is safe for concurrent use: Match may run in any number of goroutines while
// Add and Remove are called; each Match sees the rule set as it was when the
// call started.
package pattern
