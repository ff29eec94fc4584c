package steps

import (
	_ "embed"
	"fmt"
)

// ExampleYAML is the example site from the design: two nodes (db, web), an
// mTLS service, a database on the mesh. The wizard starts from it.
//
//go:embed example.yaml
var ExampleYAML []byte

// Example returns the example site, parsed and validated.
func Example() *Site {
	s, err := Parse(ExampleYAML, "example.yaml")
	if err != nil {
		panic(fmt.Sprintf("steps: the embedded example site is invalid: %v", err))
	}
	return s
}
