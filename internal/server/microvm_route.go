package server

type microVMOwners struct{}
