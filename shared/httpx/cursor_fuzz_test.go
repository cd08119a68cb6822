package httpx

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/problem"
)

// cursorPos is shaped like the list endpoints' keyset positions: a time,
// an id, a free string and a number.
type cursorPos struct {
	At     time.Time `json:"t,omitempty"`
	ID     string    `json:"id"`
	Key    string    `json:"a,omitempty"`
	Volume int64     `json:"v,omitempty"`
}

// FuzzDecodeCursor: any "cursor" query parameter is absent, a 4xx problem,
// or a position whose strings Postgres can take (no U+0000: a cursor goes
// to SQL as it is); what EncodeCursor writes decodes to what it was given.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(EncodeCursor(cursorPos{ID: "6f1c7e0a-0000-4000-8000-000000000001", At: time.Date(2026, 3, 1, 10, 30, 0, 123456000, time.UTC)}), "x", int64(5))
	f.Add("eyJpZCI6Ilx1MDAwMCJ9", "", int64(0)) // {"id":"\u0000"}
	f.Add("not base64!", "a\x00b", int64(-1))
	f.Fuzz(func(t *testing.T, cursor, key string, volume int64) {
		r := httptest.NewRequest("GET", "/x?cursor="+url.QueryEscape(cursor), nil)
		var pos cursorPos
		ok, err := DecodeCursor(r, &pos)
		switch {
		case err != nil:
			var pe *problem.Error
			if !errors.As(err, &pe) || problem.Common.Status(pe) < 400 || problem.Common.Status(pe) >= 500 || ok {
				t.Fatalf("cursor %q: %v (ok %v), want a 4xx problem", cursor, err, ok)
			}
		case !ok && cursor != "":
			t.Fatalf("cursor %q ignored", cursor)
		case ok && strings.ContainsRune(pos.ID+pos.Key, 0):
			t.Fatalf("cursor %q holds U+0000: %+v", cursor, pos)
		}
		// What the endpoints write reads back the same.
		if strings.ContainsRune(key, 0) {
			return // never written: positions come from stored rows
		}
		want := cursorPos{ID: key, Key: key, Volume: volume, At: time.Unix(volume%(1<<34), 0).UTC()}
		var got cursorPos
		r = httptest.NewRequest("GET", "/x?cursor="+EncodeCursor(want), nil)
		if ok, err := DecodeCursor(r, &got); !ok || err != nil {
			t.Fatalf("EncodeCursor(%+v) does not decode: %v", want, err)
		}
		if strings.ToValidUTF8(key, "\uFFFD") == key && !reflect.DeepEqual(got, want) {
			t.Fatalf("EncodeCursor(%+v) decodes as %+v", want, got)
		}
	})
}
