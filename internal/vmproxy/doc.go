// Package vmproxy is the MicroVMs' endpoint: requests to
// <id>.lambda-microvm.<domain> (or /microvm/<id>/… where wildcard names do
// not resolve) that carry a token for the MicroVM and port
// (X-aws-proxy-auth, or the lambda-microvms WebSocket subprotocols) are
// forwarded to a port in the guest, HTTP/1.1, h2c, WebSocket, SSE and gRPC
// alike, as AWS Lambda MicroVMs' endpoint does. It also mints and verifies
// those tokens.
package vmproxy
