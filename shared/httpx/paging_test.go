package httpx

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/problem"
)

func get(query string) *http.Request {
	return httptest.NewRequest(http.MethodGet, "/things?"+query, nil)
}

func TestPagingReportsBothBadParametersAtOnce(t *testing.T) {
	_, _, err := Paging(get("limit=0&cursor=%21%21"), 20, 100, &IDCursor{})
	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Code != problem.ValidationFailed || len(pe.Errors) != 2 ||
		pe.Errors[0].Parameter != "limit" || pe.Errors[1].Parameter != "cursor" {
		t.Fatalf("err = %#v", err)
	}
	limit, after, err := Paging(get(""), 20, 100, &IDCursor{})
	if err != nil || limit != 20 || after {
		t.Fatalf("defaults: %d %v %v", limit, after, err)
	}
}

func TestPagingByIDFollowsTheIDRule(t *testing.T) {
	const id = "0190a0b4-5c2e-7d3f-8a1b-0123456789ab"
	page := Page([]IDCursor{{ID: "a"}, {ID: id}, {ID: "c"}}, 2, func(c IDCursor) any { return IDCursor{ID: strings.ToUpper(c.ID)} })
	if !page.HasMore || page.NextCursor == "" {
		t.Fatalf("page %+v", page)
	}
	limit, after, err := PagingByID(get("limit=2&cursor="+page.NextCursor), 20, 100)
	if err != nil || limit != 2 || after != id {
		t.Fatalf("PagingByID = %d %q %v, want 2 %q", limit, after, err, id)
	}
	if _, after, err := PagingByID(get("limit=5"), 20, 100); err != nil || after != "" {
		t.Fatalf("without a cursor: %q %v", after, err)
	}
	bad := EncodeCursor(IDCursor{ID: "{" + id + "}"})
	if _, _, err := PagingByID(get("cursor="+bad), 20, 100); !errors.As(err, new(*problem.Error)) {
		t.Fatalf("a cursor naming no id: %v", err)
	}
}
