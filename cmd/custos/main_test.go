package main

import (
	"testing"

	"github.com/custos-dev/custos/credentials/azuritetest"
)

// TestMain stops the Azure Storage emulator the tests start once for the
// package (azuritetest.Shared), after every test ran.
func TestMain(m *testing.M) { azuritetest.Main(m) }
