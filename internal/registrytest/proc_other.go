//go:build !linux

package registrytest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
