// Package bench holds peer benchmarks that need dependencies the product
// must not have: here, embedded NATS JetStream, the durable local bus a user
// would pick instead of agentbus's SQLite bus. It is its own module so that
// agentbus itself never depends on NATS.
//
//	cd bench && go test -run '^$' -bench . -benchtime 20000x
package bench
