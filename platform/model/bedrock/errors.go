package bedrock

import (
	"errors"
	"net"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/agentbus/agentbus/platform/model"
)

// Error codes of the Converse API (see its "Errors" section) and how they
// are classified.
var errorKinds = map[string]error{
	"ThrottlingException":           model.ErrThrottled, // 429
	"ServiceQuotaExceededException": model.ErrThrottled, // 400, quota: retrying later may pass
	"ServiceUnavailableException":   model.ErrTransient, // 503
	"InternalServerException":       model.ErrTransient, // 500
	"ModelNotReadyException":        model.ErrTransient, // 429, model being loaded
	"ModelTimeoutException":         model.ErrTransient, // 408
	"ValidationException":           model.ErrInvalidRequest,
	"AccessDeniedException":         model.ErrAccessDenied,  // 403, also "model access not granted"
	"UnrecognizedClientException":   model.ErrAccessDenied,  // bad credentials
	"ResourceNotFoundException":     model.ErrModelNotFound, // 404, unknown model id in the region
	"ModelErrorException":           model.ErrModel,         // 424, the model failed on this input
}

// classify maps an SDK error to a model error kind: by the API error code
// first, then by HTTP status, then network failures as transient. Anything
// else (e.g. a response that cannot be deserialized) is ErrModel.
func classify(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if k, ok := errorKinds[ae.ErrorCode()]; ok {
			return k
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch s := re.HTTPStatusCode(); {
		case s == 429:
			return model.ErrThrottled
		case s == 408 || s >= 500:
			return model.ErrTransient
		case s == 401 || s == 403:
			return model.ErrAccessDenied
		case s == 404:
			return model.ErrModelNotFound
		case s >= 400:
			return model.ErrInvalidRequest
		}
	}
	var se *smithyhttp.RequestSendError
	var ne net.Error
	if errors.As(err, &se) || errors.As(err, &ne) {
		return model.ErrTransient
	}
	return model.ErrModel
}
