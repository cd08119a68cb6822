package outbox

// Batches is how many publish transactions p has run, for the tests.
func Batches(p *Publisher) int64 { return p.batches.Load() }

// The statements of a pass that find rows by their key, for the tests.
const (
	PassSQL    = passSQL
	DeleteSQL  = deleteSQL
	RefusedSQL = refusedSQL
)

// VacuumEvery is how many rows a publisher deletes between its vacuums.
const VacuumEvery = vacuumEvery

// Vacuumed waits for p's vacuums under way, if any; no pass may run meanwhile.
func Vacuumed(p *Publisher) { p.vacuums.Wait() }

// NewPassProducer is the publisher's producer, for the tests.
func NewPassProducer(brokers []string) (*passProducer, error) {
	return newPassProducer(brokers, ProducerConfig())
}
