//! A shard's parents, from Kinesis `ListShards`: when a stream is resharded, Lambda finishes a
//! parent shard before it reads its children
//! (<https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html>), so a child's first batch
//! means its parents are done.

/// The parent and adjacent parent of `shard` in `stream` (none for a shard made with the
/// stream), listing every page of the stream's shards.
pub(crate) async fn parents(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
) -> Result<Vec<String>, String> {
    let mut next: Option<String> = None;
    loop {
        // ListShards takes the stream's name or a token, never both.
        let request = match &next {
            Some(token) => kinesis.list_shards().next_token(token),
            None => kinesis.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())?;
        let shards = page.shards().iter().map(|s| {
            (
                s.shard_id(),
                s.parent_shard_id(),
                s.adjacent_parent_shard_id(),
            )
        });
        if let Some(found) = parents_of(shards, shard) {
            return Ok(found);
        }
        match page.next_token() {
            Some(token) => next = Some(token.to_string()),
            None => return Err(format!("{shard} is not among the shards of {stream}")),
        }
    }
}

/// The parents of `shard` among `(shard, parent, adjacent parent)`; None when it is not listed.
fn parents_of<'s>(
    shards: impl IntoIterator<Item = (&'s str, Option<&'s str>, Option<&'s str>)>,
    shard: &str,
) -> Option<Vec<String>> {
    shards
        .into_iter()
        .find(|(id, _, _)| *id == shard)
        .map(|(_, parent, adjacent)| {
            parent
                .into_iter()
                .chain(adjacent)
                .map(String::from)
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_shard_has_two_parents_a_split_one_one_an_original_none() {
        let shards = [
            ("shardId-0", None, None),
            ("shardId-1", None, None),
            ("shardId-2", Some("shardId-0"), Some("shardId-1")),
            ("shardId-3", Some("shardId-2"), None),
        ];
        assert_eq!(
            parents_of(shards, "shardId-2"),
            Some(vec!["shardId-0".to_string(), "shardId-1".to_string()])
        );
        assert_eq!(
            parents_of(shards, "shardId-3"),
            Some(vec!["shardId-2".to_string()])
        );
        assert_eq!(parents_of(shards, "shardId-0"), Some(vec![]));
        assert_eq!(parents_of(shards, "shardId-9"), None);
    }
}
