package outbox

// Batches is how many publish transactions p has run, for the tests.
func Batches(p *Publisher) int64 { return p.batches.Load() }

// The statements of a pass that find rows by their key, for the tests.
const (
	DeleteSQL  = deleteSQL
	RefusedSQL = refusedSQL
)
