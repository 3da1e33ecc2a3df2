package pgtest

import (
	"context"
	"errors"
	"fmt"

	"github.com/previewd/previewd/internal/harness/pgserver"
)

// startThrowaway starts a throwaway server (see pgserver.StartThrowaway) in
// a directory named previewd-pgtest-*. The caller must stop it.
func startThrowaway(ctx context.Context) (*pgserver.Server, error) {
	tw, err := pgserver.StartThrowaway(ctx, "previewd-pgtest-")
	return tw, noBinariesHint(err)
}

// noBinariesHint adds to pgserver.ErrNoBinaries that tests may name a
// server instead.
func noBinariesHint(err error) error {
	if errors.Is(err, pgserver.ErrNoBinaries) {
		return fmt.Errorf("%w or set %s", err, EnvURL)
	}
	return err
}
