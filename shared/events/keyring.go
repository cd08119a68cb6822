package events

import (
	"sync/atomic"
	"time"

	"github.com/billfn/billfn/shared/config"
)

// KeyRing holds the event-signing keys in force (the first signs, all
// verify) and follows their secret file: after a rotation of the file
// (OpenFaaS or Kubernetes replacing it), the next delivery is signed or
// verified with the new list, without a restart. Safe for concurrent use.
type KeyRing struct {
	keys  atomic.Pointer[[][]byte]
	watch *config.Watched
}

// NewKeyRing holds keys as they are (tests, a list that never changes).
func NewKeyRing(keys [][]byte) *KeyRing {
	r := &KeyRing{}
	r.keys.Store(&keys)
	return r
}

// WatchKeys parses list (ParseKeys, variable names it in errors) and, when
// the secret file <SecretsDir>/<secret> exists, reads it again whenever it
// changes, at most every every (<= 0: config.DefaultReloadEvery). A changed
// file that does not parse (a key too short, an empty list) leaves the keys
// in force.
func WatchKeys(list, variable, secret string, every time.Duration) (*KeyRing, error) {
	keys, err := ParseKeys(list, variable)
	if err != nil {
		return nil, err
	}
	r := NewKeyRing(keys)
	r.watch, err = config.WatchSecret(secret, every, func(value string) error {
		keys, err := ParseKeys(value, "secret file "+secret)
		if err != nil {
			return err
		}
		r.keys.Store(&keys)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Keys returns the keys in force, looking at the file first when its
// interval has passed.
func (r *KeyRing) Keys() [][]byte {
	r.watch.Check()
	return *r.keys.Load()
}
