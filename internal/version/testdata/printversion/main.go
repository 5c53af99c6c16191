// Command printversion prints internal/version.Version (for the package's test of a stamped build).
package main

import (
	"fmt"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/version"
)

func main() { fmt.Println(version.Version) }
