// Command vault builds the pinned Vault server that the plugin is tested against.
// It lives in its own module so that Vault's large dependency graph never enters the plugin's go.mod.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
