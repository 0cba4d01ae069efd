//go:build !linux

package codepages

import "errors"

func findRanges() ([]span, error) {
	return nil, errors.New("only on Linux")
}

func release([]span) error { return nil }
