package pattern

import (
	"errors"
	"fmt"
)

// ErrInvalidPattern is wrapped by every error Compile returns; it plays the
// role of PutRule's InvalidEventPatternException.
var ErrInvalidPattern = errors.New("invalid event pattern")

// ErrInvalidEvent is wrapped by the errors Match returns for an event that is
// not a JSON object.
var ErrInvalidEvent = errors.New("invalid event")

// invalid builds a validation error naming the field path and the rule broken.
func invalid(path, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		return fmt.Errorf("%w: %s", ErrInvalidPattern, msg)
	}
	return fmt.Errorf("%w: field %q: %s", ErrInvalidPattern, path, msg)
}
