// Package stepfunctions runs sagas (saga.Definition) on AWS Step Functions:
//
//   - Runner (saga.Runner) starts an execution of the saga's state machine
//     (the ASL that saga.ASL generates) with StartExecution and maps
//     DescribeExecution to a saga.Outcome.
//   - Worker long-polls the saga SQS queue that the state machine's Task
//     states send to (arn:aws:states:::sqs:sendMessage.waitForTaskToken),
//     runs each task through a saga.Invoker (the tool-gateway's claim
//     ledger) and answers with SendTaskSuccess / SendTaskFailure, sending
//     SendTaskHeartbeat while the tool runs.
//   - Provision creates (or updates) the saga queue, its DLQ and the state
//     machines, for tests and `stack bootstrap`; Terraform does it in AWS.
//
// The execution input is the saga document {"session", "saga", "input",
// "steps": {}}; the task message body is the JSON object the ASL builds (a
// saga.Task plus its taskToken). An execution that fails after compensating
// ends in the "Compensated" Fail state (error = the original step error) or,
// for a runtime States.* error, "CompensatedRuntimeError" (error
// agentbus.Compensated); one whose compensation failed ends in
// "CompensationFailed" (error agentbus.CompensationFailed). The cause of all
// three is the JSON report {failedStep, error, cause, compensated,
// compensationFailures}, from which Describe builds the saga.Outcome
// (failedStep "" is the output template's missing path after every step
// succeeded: Outcome.FailedStep "", as the embedded runner reports it); any
// other end (TIMED_OUT, ABORTED, a FAILED without the report) is an
// *EndError (ErrAbnormalEnd), never a success.
//
// Start describes the execution name before StartExecution, because Step
// Functions answers a repeated start of a RUNNING execution with the same
// input as if it had started it: that is started=false here. The worker
// keys nothing by task token: the Invoker's claim key is Task.Key()
// (execution, step, kind, attempt), so a redelivered message returns the
// stored outcome and is answered again; an answer refused because the task
// is gone (TaskTimedOut, TaskDoesNotExist, InvalidToken) deletes the
// message. Differences of moto (the local stand-in) that matter here are in
// docs/moto-differences.md (Step Functions).
package stepfunctions
