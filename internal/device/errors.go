package device

import (
	"errors"
	"fmt"

	"github.com/faultbox/faultbox/profiles"
)

// InputError marks an error in what the user asked for (a bad name, host
// list, prefix or profile), as opposed to a failure of the system: the CLI
// exits with status 2.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// InputErrorf formats an InputError.
func InputErrorf(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// IsInputError reports whether err is (or wraps) bad input.
func IsInputError(err error) bool {
	var ie *InputError
	var pe *profiles.Error
	return errors.As(err, &ie) || errors.As(err, &pe)
}
