package engine

import "github.com/etcd-rescue/etcd-rescue/steps"

func registry() map[string]*steps.Type { return steps.Registry() }
