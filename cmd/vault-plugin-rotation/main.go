// Command vault-plugin-rotation is the rotation secrets engine, served to Vault as a plugin.
package main

import (
	"os"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/paths"
)

// defaultGCPercent keeps the heap within 1.5x of what is live (Go's default is 2x): the plugin's
// memory is mostly its role index, and a busy LIST at 10,000 roles leaves megabytes of garbage
// (docs/benchmarks.md §3). GOGC in the plugin's environment (vault plugin register -env) wins.
const defaultGCPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	apiClientMeta := &api.PluginAPIClientMeta{}
	flags := apiClientMeta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	tlsConfig := apiClientMeta.GetTLSConfig()
	tlsProviderFunc := api.VaultPluginTLSProvider(tlsConfig)

	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: paths.Factory,
		TLSProviderFunc:    tlsProviderFunc,
	}); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
