package bedrock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithydocument "github.com/aws/smithy-go/document"

	"github.com/agentbus/agentbus/platform/model"
)

// toInput builds the ConverseInput for a validated request.
func toInput(modelID string, req model.Request) (*bedrockruntime.ConverseInput, error) {
	in := &bedrockruntime.ConverseInput{ModelId: aws.String(modelID)}
	if req.System != "" {
		in.System = []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: req.System}}
	}
	if req.MaxTokens > 0 {
		in.InferenceConfig = &types.InferenceConfiguration{MaxTokens: aws.Int32(int32(min(req.MaxTokens, math.MaxInt32)))}
	}
	if len(req.Tools) > 0 {
		tc := &types.ToolConfiguration{}
		for _, t := range req.Tools {
			schema, err := toDocument(t.InputSchema)
			if err != nil {
				return nil, fmt.Errorf("tool %q inputSchema: %w", t.Name, err)
			}
			spec := types.ToolSpecification{Name: aws.String(t.Name), InputSchema: &types.ToolInputSchemaMemberJson{Value: schema}}
			if t.Description != "" {
				spec.Description = aws.String(t.Description)
			}
			tc.Tools = append(tc.Tools, &types.ToolMemberToolSpec{Value: spec})
		}
		in.ToolConfig = tc
	}
	for i, msg := range req.Messages {
		out := types.Message{Role: types.ConversationRole(msg.Role)}
		for j, b := range msg.Content {
			cb, err := toContentBlock(b)
			if err != nil {
				return nil, fmt.Errorf("message %d block %d: %w", i, j, err)
			}
			out.Content = append(out.Content, cb)
		}
		in.Messages = append(in.Messages, out)
	}
	return in, nil
}

func toContentBlock(b model.Block) (types.ContentBlock, error) {
	switch {
	case b.ToolUse != nil:
		input, err := toDocument(b.ToolUse.Input)
		if err != nil {
			return nil, fmt.Errorf("toolUse input: %w", err)
		}
		return &types.ContentBlockMemberToolUse{Value: types.ToolUseBlock{
			ToolUseId: aws.String(b.ToolUse.ID), Name: aws.String(b.ToolUse.Name), Input: input,
		}}, nil
	case b.ToolResult != nil:
		r := b.ToolResult
		content, err := toResultContent(r.Content)
		if err != nil {
			return nil, fmt.Errorf("toolResult content: %w", err)
		}
		status := types.ToolResultStatusSuccess
		if r.IsError {
			status = types.ToolResultStatusError
		}
		return &types.ContentBlockMemberToolResult{Value: types.ToolResultBlock{
			ToolUseId: aws.String(r.ToolUseID), Content: []types.ToolResultContentBlock{content}, Status: status,
		}}, nil
	default:
		return &types.ContentBlockMemberText{Value: b.Text}, nil
	}
}

// toResultContent maps a tool's JSON output to one toolResult content block:
// an object as a json block, a string as a text block, any other value (a
// number, array, boolean, null) as its JSON text, because several models
// accept only objects in json blocks.
func toResultContent(raw json.RawMessage) (types.ToolResultContentBlock, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return &types.ToolResultContentBlockMemberText{Value: s}, nil
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		doc, err := toDocument(raw)
		if err != nil {
			return nil, err
		}
		return &types.ToolResultContentBlockMemberJson{Value: doc}, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return &types.ToolResultContentBlockMemberText{Value: buf.String()}, nil
}

// toDocument turns JSON into a Smithy document, keeping numbers exact
// (json.Number becomes document.Number, which the document encoder writes as a
// JSON number; a json.Number would be written as a string).
func toDocument(raw json.RawMessage) (document.Interface, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return document.NewLazyDocument(numbersToDocument(v)), nil
}

func numbersToDocument(v any) any {
	switch x := v.(type) {
	case json.Number:
		return smithydocument.Number(x)
	case map[string]any:
		for k, e := range x {
			x[k] = numbersToDocument(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = numbersToDocument(e)
		}
		return x
	default:
		return v
	}
}

// fromDocument renders a response document as JSON.
func fromDocument(d document.Interface) (json.RawMessage, error) {
	if d == nil {
		return json.RawMessage(`{}`), nil
	}
	b, err := d.MarshalSmithyDocument()
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("document is not valid JSON: %q", b)
	}
	return json.RawMessage(b), nil
}

// fromOutput maps a ConverseOutput to a model.Response. Content blocks other
// than text and toolUse (reasoning, citations, images) are ignored.
func fromOutput(out *bedrockruntime.ConverseOutput) (model.Response, error) {
	msg, ok := out.Output.(*types.ConverseOutputMemberMessage)
	if !ok || msg == nil {
		return model.Response{}, errors.New("response carries no output message")
	}
	var resp model.Response
	var texts []string
	for _, cb := range msg.Value.Content {
		switch b := cb.(type) {
		case *types.ContentBlockMemberText:
			if b.Value != "" {
				texts = append(texts, b.Value)
			}
		case *types.ContentBlockMemberToolUse:
			input, err := fromDocument(b.Value.Input)
			if err != nil {
				return model.Response{}, fmt.Errorf("toolUse %s input: %w", aws.ToString(b.Value.Name), err)
			}
			if string(input) == "null" {
				input = json.RawMessage(`{}`)
			}
			resp.ToolUses = append(resp.ToolUses, model.ToolUse{
				ID: aws.ToString(b.Value.ToolUseId), Name: aws.ToString(b.Value.Name), Input: input,
			})
		}
	}
	resp.Text = strings.Join(texts, "\n")
	resp.StopReason = mapStopReason(out.StopReason)
	if u := out.Usage; u != nil {
		resp.Usage = model.Usage{InputTokens: int(aws.ToInt32(u.InputTokens)), OutputTokens: int(aws.ToInt32(u.OutputTokens))}
	}
	return resp, nil
}

// mapStopReason maps every value of the SDK's enum; a value newer than this
// SDK passes through unchanged (model.StopReason.Known reports false).
func mapStopReason(s types.StopReason) model.StopReason {
	switch s {
	case types.StopReasonEndTurn:
		return model.StopEndTurn
	case types.StopReasonToolUse:
		return model.StopToolUse
	case types.StopReasonMaxTokens:
		return model.StopMaxTokens
	case types.StopReasonStopSequence:
		return model.StopStopSequence
	case types.StopReasonGuardrailIntervened:
		return model.StopGuardrailIntervened
	case types.StopReasonContentFiltered:
		return model.StopContentFiltered
	case types.StopReasonMalformedModelOutput:
		return model.StopMalformedModelOutput
	case types.StopReasonMalformedToolUse:
		return model.StopMalformedToolUse
	case types.StopReasonModelContextWindowExceeded:
		return model.StopModelContextWindowExceeded
	default:
		return model.StopReason(s)
	}
}
