"""Custom search attributes: enums and counts only (they are not encrypted)."""

from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

CONNECTOR = SearchAttributeKey.for_keyword("PdppConnector")
TRIGGER = SearchAttributeKey.for_keyword("PdppTrigger")
RUN_STATUS = SearchAttributeKey.for_keyword("PdppRunStatus")
NEEDS_RETRY = SearchAttributeKey.for_bool("PdppNeedsRetry")
RECORDS_DURABLE = SearchAttributeKey.for_int("PdppRecordsDurable")
GAPS_OPEN = SearchAttributeKey.for_int("PdppGapsOpen")

ALL: list[SearchAttributeKey[Any]] = [CONNECTOR, TRIGGER, RUN_STATUS, NEEDS_RETRY, RECORDS_DURABLE, GAPS_OPEN]

_INDEXED = {
    SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SearchAttributeIndexedValueType.BOOL: IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    SearchAttributeIndexedValueType.INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
}


async def register(client: Client) -> None:
    """Register the attributes on a server that lacks them (idempotent: a server that has them
    answers AlreadyExists, which is fine)."""
    request = AddSearchAttributesRequest(
        namespace=client.namespace,
        search_attributes={k.name: _INDEXED[k.indexed_value_type] for k in ALL},
    )
    try:
        await client.operator_service.add_search_attributes(request)
    except RPCError as e:
        if e.status is not RPCStatusCode.ALREADY_EXISTS:
            raise
