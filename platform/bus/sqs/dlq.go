package sqs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/agentbus/agentbus/platform/bus"
)

// ReasonRedrivePolicy is the reason List reports for a dead letter without
// AttrReason: SQS moved it after maxReceiveCount receives and records no why
// (the worker logged each failure with the message id).
const ReasonRedrivePolicy = "maxReceiveCount exceeded (moved by the SQS redrive policy)"

// dlqHold is how long List and Redrive hide the DLQ messages they have seen,
// so that repeated receives within one call return new messages; List makes
// them visible again before returning.
const dlqHold = 30 * time.Second

// List returns up to max dead letters without removing them: it receives
// from the DLQ, then makes what it saw visible again at once.
func (q *Queue) List(ctx context.Context, max int) ([]bus.DeadLetter, error) {
	if q.info.DLQURL == "" {
		return nil, fmt.Errorf("sqs: list DLQ of %s: %w", q.info.Name, errNoDLQ)
	}
	msgs, err := q.receiveDLQ(ctx, max)
	// Release what was seen even when a later receive failed.
	relErr := q.release(ctx, msgs)
	if err != nil {
		return nil, err
	}
	if relErr != nil {
		return nil, relErr
	}
	out := make([]bus.DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, toDeadLetter(m))
	}
	return out, nil
}

// Redrive moves up to max dead letters back to the source queue (receive,
// send, delete; moto has no StartMessageMoveTask, and a move task cannot be
// bounded by a count) and reports how many moved. A message whose send
// fails stays in the DLQ; one whose delete fails after the send may be
// delivered twice, which handlers tolerate (at-least-once).
func (q *Queue) Redrive(ctx context.Context, max int) (int, error) {
	if q.info.DLQURL == "" {
		return 0, fmt.Errorf("sqs: redrive DLQ of %s: %w", q.info.Name, errNoDLQ)
	}
	moved := 0
	for max <= 0 || moved < max {
		want := maxBatch
		if max > 0 {
			want = min(maxBatch, max-moved)
		}
		msgs, err := q.receiveBatch(ctx, q.info.DLQURL, want)
		if err != nil {
			return moved, err
		}
		if len(msgs) == 0 {
			return moved, nil
		}
		n, err := q.moveBatch(ctx, msgs)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// moveBatch sends msgs to the source queue without the agentbus.*
// attributes, deletes the sent ones from the DLQ, and releases the rest.
func (q *Queue) moveBatch(ctx context.Context, msgs []types.Message) (int, error) {
	entries := make([]types.SendMessageBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = types.SendMessageBatchRequestEntry{
			Id:                aws.String(strconv.Itoa(i)),
			MessageBody:       m.Body,
			MessageAttributes: foreignAttrs(m.MessageAttributes),
		}
	}
	out, err := q.api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.info.URL), Entries: entries})
	if err != nil {
		_ = q.release(ctx, msgs)
		return 0, fmt.Errorf("sqs: redrive %s: send: %w", q.info.Name, err)
	}
	sent := make([]string, 0, len(out.Successful))
	for _, s := range out.Successful {
		if i, err := strconv.Atoi(aws.ToString(s.Id)); err == nil && i >= 0 && i < len(msgs) {
			sent = append(sent, aws.ToString(msgs[i].ReceiptHandle))
		}
	}
	var unsent []types.Message
	var reasons []string
	for _, f := range out.Failed {
		if i, err := strconv.Atoi(aws.ToString(f.Id)); err == nil && i >= 0 && i < len(msgs) {
			unsent = append(unsent, msgs[i])
			reasons = append(reasons, fmt.Sprintf("%s: %s: %s", aws.ToString(msgs[i].MessageId), aws.ToString(f.Code), aws.ToString(f.Message)))
		}
	}
	_ = q.release(ctx, unsent)
	moved := len(sent)
	if failed := q.deleteBatch(ctx, q.info.DLQURL, sent); len(failed) > 0 {
		// Sent but still in the DLQ: it will show up there again.
		q.log.WarnContext(ctx, "sqs: redrive sent messages but could not delete them from the DLQ", "queue", q.info.Name, "count", len(failed))
		moved -= len(failed)
		for _, f := range failed {
			reasons = append(reasons, "delete from DLQ after send: "+f.Reason)
		}
	}
	if len(reasons) > 0 {
		return moved, fmt.Errorf("sqs: redrive %s: %d message(s) not moved: %s", q.info.Name, len(reasons), strings.Join(reasons, "; "))
	}
	return moved, nil
}

// receiveDLQ gathers up to max distinct DLQ messages (max <= 0: all).
func (q *Queue) receiveDLQ(ctx context.Context, max int) ([]types.Message, error) {
	var all []types.Message
	seen := map[string]bool{}
	for max <= 0 || len(all) < max {
		want := maxBatch
		if max > 0 {
			want = min(maxBatch, max-len(all))
		}
		msgs, err := q.receiveBatch(ctx, q.info.DLQURL, want)
		if err != nil {
			return all, err
		}
		fresh := 0
		for _, m := range msgs {
			id := aws.ToString(m.MessageId)
			if seen[id] {
				continue
			}
			seen[id] = true
			all = append(all, m)
			fresh++
		}
		if fresh == 0 {
			return all, nil
		}
	}
	return all, nil
}

// receiveBatch receives from a DLQ with a 1 s wait: long polling asks every
// SQS server, where a short poll samples a subset and can miss messages.
func (q *Queue) receiveBatch(ctx context.Context, url string, n int) ([]types.Message, error) {
	out, err := q.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(url),
		MaxNumberOfMessages: int32(n),
		WaitTimeSeconds:     1,
		VisibilityTimeout:   int32(dlqHold / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{
			types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp,
		},
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		return nil, fmt.Errorf("sqs: receive from DLQ of %s: %w", q.info.Name, err)
	}
	return out.Messages, nil
}

// release makes msgs visible again at once.
func (q *Queue) release(ctx context.Context, msgs []types.Message) error {
	var errs []string
	for start := 0; start < len(msgs); start += maxBatch {
		chunk := msgs[start:min(start+maxBatch, len(msgs))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(chunk))
		for i, m := range chunk {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
		}
		// A fresh context: releasing matters most when ctx was cancelled.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		out, err := q.api.ChangeMessageVisibilityBatch(rctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(q.info.DLQURL), Entries: entries})
		cancel()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, f := range out.Failed {
			errs = append(errs, aws.ToString(f.Code)+": "+aws.ToString(f.Message))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sqs: DLQ of %s: messages stay hidden for %s: %s", q.info.Name, dlqHold, strings.Join(errs, "; "))
	}
	return nil
}

func toDeadLetter(m types.Message) bus.DeadLetter {
	d := bus.DeadLetter{
		ID:     aws.ToString(m.MessageId),
		Body:   []byte(aws.ToString(m.Body)),
		Reason: ReasonRedrivePolicy,
		// Not counting the receive that List itself just made.
		ReceiveCount: max(atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])-1, 0),
		DeadAt:       millis(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)]),
	}
	if v, ok := m.MessageAttributes[AttrReason]; ok {
		d.Reason = aws.ToString(v.StringValue)
		// Our own copy: the receive count and id of the source delivery are
		// in attributes (the DLQ's count only counts List calls).
		if rc, ok := m.MessageAttributes[AttrReceiveCount]; ok {
			d.ReceiveCount = atoi(aws.ToString(rc.StringValue))
		}
		if id, ok := m.MessageAttributes[AttrMessageID]; ok && aws.ToString(id.StringValue) != "" {
			d.ID = aws.ToString(id.StringValue)
		}
	}
	return d
}

// foreignAttrs drops the agentbus.* attributes DeadLetter added, keeping any
// others the message came with.
func foreignAttrs(in map[string]types.MessageAttributeValue) map[string]types.MessageAttributeValue {
	var out map[string]types.MessageAttributeValue
	for k, v := range in {
		if strings.HasPrefix(k, "agentbus.") {
			continue
		}
		if out == nil {
			out = map[string]types.MessageAttributeValue{}
		}
		out[k] = v
	}
	return out
}
