package store

import "strings"

// The statements that write the replicated tables. They are named here,
// not written inline, because they are what the configuration log carries:
// a host applies an entry's statement only when it is one of these
// (replicatedSQL), so whoever can publish to the log can change the
// configuration the way the API can, and nothing else (no other table, no
// PRAGMA, no ATTACH). Every value is a bound argument computed in Go before
// the entry is made, so every host applying it writes the same rows.
const (
	sqlInsertFunction        = `INSERT INTO functions (name, config) VALUES (?, ?)`
	sqlUpdateFunctionConfig  = `UPDATE functions SET config = ? WHERE name = ?`
	sqlSetFunctionVersionSeq = `UPDATE functions SET version_seq = ? WHERE name = ?`
	sqlSetConcurrency        = `UPDATE functions SET concurrency = ? WHERE name = ?`
	sqlDeleteFunction        = `DELETE FROM functions WHERE name = ?`
	sqlDeleteVersions        = `DELETE FROM versions WHERE name = ?`
	sqlDeleteAliases         = `DELETE FROM aliases WHERE name = ?`
	sqlDeleteURLConfigs      = `DELETE FROM url_configs WHERE function = ?`
	sqlDeleteTags            = `DELETE FROM tags WHERE function = ?`
	sqlDeletePolicies        = `DELETE FROM policies WHERE function = ?`
	sqlInsertVersion         = `INSERT INTO versions (name, version, config) VALUES (?, ?, ?)`

	sqlUpdateAlias = `UPDATE aliases SET version = ?, description = ?, revision = ? WHERE name = ? AND alias = ?`
	sqlInsertAlias = `INSERT INTO aliases (name, alias, version, description, revision) VALUES (?, ?, ?, ?, ?)`
	sqlDeleteAlias = `DELETE FROM aliases WHERE name = ? AND alias = ?`

	sqlUpdateURLConfig = `UPDATE url_configs SET config = ? WHERE function = ? AND qualifier = ?`
	sqlInsertURLConfig = `INSERT INTO url_configs (function, qualifier, url_id, config) VALUES (?, ?, ?, ?)`
	sqlDeleteURLConfig = `DELETE FROM url_configs WHERE function = ? AND qualifier = ?`

	sqlInsertTag = `INSERT INTO tags (function, key, value) VALUES (?, ?, ?)`

	sqlDeletePolicy = `DELETE FROM policies WHERE function = ? AND qualifier = ?`
	sqlPutPolicy    = `INSERT INTO policies (function, qualifier, revision, document) VALUES (?, ?, ?, ?)
			ON CONFLICT (function, qualifier) DO UPDATE SET revision = excluded.revision, document = excluded.document`

	sqlNextLayerVersion = `INSERT INTO layers (name, version_seq) VALUES (?, 1)
		ON CONFLICT (name) DO UPDATE SET version_seq = version_seq + 1 RETURNING version_seq`
	sqlInsertLayerVersion      = `INSERT INTO layer_versions (name, version, config) VALUES (?, ?, ?)`
	sqlMarkLayerVersionDeleted = `UPDATE layer_versions SET deleted = 1 WHERE name = ? AND version = ?`
	sqlDeleteLayerVersion      = `DELETE FROM layer_versions WHERE name = ? AND version = ?`
	sqlSetLayerVersionPolicy   = `UPDATE layer_versions SET revision = ?, policy = ? WHERE name = ? AND version = ?`

	sqlPutEventInvokeConfig = `INSERT INTO event_invoke_configs (function, qualifier, config) VALUES (?, ?, ?)
		ON CONFLICT (function, qualifier) DO UPDATE SET config = excluded.config`
	sqlDeleteEventInvokeConfigs = `DELETE FROM event_invoke_configs WHERE function = ?`
	sqlDeleteEventInvokeConfig  = `DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?`

	sqlInsertQueue = `INSERT INTO queues (name, id, attributes, created, modified) VALUES (?, ?, ?, ?, ?)`
	sqlUpdateQueue = `UPDATE queues SET attributes = ?, modified = ? WHERE name = ?`
	sqlDeleteQueue = `DELETE FROM queues WHERE name = ?`

	sqlInsertESM = `INSERT INTO event_source_mappings (uuid, function, qualifier, source, config) VALUES (?, ?, ?, ?, ?)`
	sqlUpdateESM = `UPDATE event_source_mappings SET function = ?, qualifier = ?, source = ?, config = ? WHERE uuid = ?`
	sqlDeleteESM = `DELETE FROM event_source_mappings WHERE uuid = ?`

	sqlInsertMicroVMImage  = `INSERT INTO microvm_images (name, description, version_seq, created, updated) VALUES (?, ?, 1, ?, ?)`
	sqlNextMicroVMImageVer = `UPDATE microvm_images SET version_seq = version_seq + 1, updated = ?,
		description = CASE WHEN ? = '' THEN description ELSE ? END WHERE name = ? RETURNING version_seq`
	sqlInsertMicroVMImageVersion = `INSERT INTO microvm_image_versions (image, version, input, digest, state, reason, template_dir, created, built)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlUpdateMicroVMImageVersion = `UPDATE microvm_image_versions SET digest = ?, state = ?, reason = ?, template_dir = ?, built = ?
		WHERE image = ? AND version = ?`
	sqlDeleteMicroVMImage         = `DELETE FROM microvm_images WHERE name = ?`
	sqlDeleteMicroVMImageVersions = `DELETE FROM microvm_image_versions WHERE image = ?`
	sqlDeleteMicroVMImageVersion  = `DELETE FROM microvm_image_versions WHERE image = ? AND version = ?`
)

// replicatedSQL maps each replicated statement (the store methods' and
// the seed's, see replicate_seed.go) to its number of bound arguments,
// which an entry's must match. It is built once and only read.
var replicatedSQL = placeholders(append(seedStatements(),
	sqlInsertFunction, sqlUpdateFunctionConfig, sqlSetFunctionVersionSeq, sqlSetConcurrency, sqlDeleteFunction,
	sqlDeleteVersions, sqlDeleteAliases, sqlDeleteURLConfigs, sqlDeleteTags, sqlDeletePolicies, sqlInsertVersion,
	sqlUpdateAlias, sqlInsertAlias, sqlDeleteAlias,
	sqlUpdateURLConfig, sqlInsertURLConfig, sqlDeleteURLConfig,
	sqlInsertTag, sqlDeletePolicy, sqlPutPolicy,
	sqlNextLayerVersion, sqlInsertLayerVersion, sqlMarkLayerVersionDeleted, sqlDeleteLayerVersion, sqlSetLayerVersionPolicy,
	sqlPutEventInvokeConfig, sqlDeleteEventInvokeConfigs, sqlDeleteEventInvokeConfig,
	sqlInsertQueue, sqlUpdateQueue, sqlDeleteQueue,
	sqlInsertESM, sqlUpdateESM, sqlDeleteESM,
	sqlInsertMicroVMImage, sqlNextMicroVMImageVer, sqlInsertMicroVMImageVersion, sqlUpdateMicroVMImageVersion,
	sqlDeleteMicroVMImage, sqlDeleteMicroVMImageVersions, sqlDeleteMicroVMImageVersion,
)...)

// placeholders counts each statement's "?" (none of them has a "?" in a
// string literal).
func placeholders(stmts ...string) map[string]int {
	m := make(map[string]int, len(stmts))
	for _, q := range stmts {
		m[q] = strings.Count(q, "?")
	}
	return m
}

// replicatedTables are the tables the log writes: the configuration every
// host shares. The others (envs, meter_*, microvms) are this host's own.
var replicatedTables = []string{"functions", "versions", "aliases", "url_configs", "tags", "policies", "layers", "layer_versions",
	"event_invoke_configs", "event_source_mappings", "queues", "microvm_images", "microvm_image_versions"}
