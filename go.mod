module github.com/hearthdev/hearth

go 1.26.8

require (
	github.com/aws/aws-lambda-go v1.55.1
	github.com/cavaliergopher/cpio v1.0.1
	github.com/google/uuid v1.6.0
	github.com/spf13/cobra v1.10.2
	golang.org/x/sys v0.50.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
)
