package bench

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/shmreg/shmreg/registry"
)

// instancesPerService is how many instances share one service name, so that
// keys look like a real registry's: svc/service-0042/instance-000420.
const instancesPerService = 10

// Dataset is what every system is loaded with and the one order in which
// every system is looked up, so that no system gets a friendlier pattern.
type Dataset struct {
	Keys   [][]byte // Keys[i] is svc/service-%04d/instance-%06d
	Values [][]byte // Values[i] is Instances[i] encoded, about 200 bytes
	// Order is a random permutation of the key indices, the same for every
	// system (fixed seed). Client c of C starts at Order[c*len/C] so that
	// concurrent clients do not walk in lockstep.
	Order []int32
}

// Instance returns the i-th instance of the dataset: service
// service-%04d, id instance-%06d, its metadata padded so that the encoded
// value is about 200 bytes, and a TTL of a day so that a center holding it
// does not expire it during a run.
func Instance(i int) registry.Instance {
	return registry.Instance{
		Service: fmt.Sprintf("service-%04d", (i/instancesPerService)%10000),
		ID:      fmt.Sprintf("instance-%06d", i),
		Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		Port:    8000 + i%1000,
		Weight:  1 + i%10,
		Metadata: map[string]string{
			"zone":    fmt.Sprintf("zone-%d", i%3),
			"version": "v1.42.7",
			"pad":     strings.Repeat("x", 48),
		},
		Health: registry.HealthPassing,
		TTL:    registry.MaxTTL,
	}
}

// NewDataset builds n entries and a random lookup order from seed.
func NewDataset(n int, seed uint64) (*Dataset, error) {
	if n <= 0 {
		return nil, fmt.Errorf("bench: dataset needs at least one entry, got %d", n)
	}
	d := &Dataset{Keys: make([][]byte, n), Values: make([][]byte, n), Order: make([]int32, n)}
	for i := range n {
		in := Instance(i)
		v, err := registry.EncodeInstance(in)
		if err != nil {
			return nil, fmt.Errorf("bench: encode instance %d: %w", i, err)
		}
		d.Keys[i] = []byte(in.Key())
		d.Values[i] = v
	}
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	for i, j := range rng.Perm(n) {
		d.Order[i] = int32(j)
	}
	return d, nil
}

// Len is the number of entries.
func (d *Dataset) Len() int { return len(d.Keys) }

// start is where client c of clients begins in Order.
func (d *Dataset) start(c, clients int) int { return c * len(d.Order) / clients }
