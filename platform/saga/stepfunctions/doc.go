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
// ends in the "Compensated" Fail state (error = the original step error,
// cause = a JSON report); one whose compensation failed ends in
// "CompensationFailed" (error agentbus.CompensationFailed). Describe reads
// the report from the cause; any other end (TIMED_OUT, ABORTED, a FAILED
// without our report) is reported as an *EndError, never as success.
package stepfunctions
