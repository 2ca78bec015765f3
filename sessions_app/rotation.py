"""Re-encrypt every stored secret under the first key of LARKAUTH_ENCRYPTION_KEYS."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import connection, models, transaction
from django_cryptography.utils.crypto import InvalidToken

from sessions_app.encryption import KEYRING, EncryptedTextField
from sessions_app.models import Application, UserAuthSession

logger = logging.getLogger(__name__)

ENCRYPTED_MODELS: tuple[type[models.Model], ...] = (Application, UserAuthSession)
UNDECRYPTABLE_REASON = "undecryptable:authorization"  # as the refresh sweep says it


@dataclass(frozen=True)
class Undecryptable:
    """A stored value no configured key decrypts: where it is, never what it is."""

    model: str
    pk: str
    column: str

    def __str__(self) -> str:
        return f"{self.model} {self.pk} {self.column}"


@dataclass
class RotationResult:
    rows_seen: int = 0
    values_reencrypted: int = 0
    undecryptable: list[Undecryptable] = field(default_factory=list)


def encrypted_columns(model: type[models.Model]) -> list[str]:
    return [str(f.column) for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]


def rotate_encryption_keys(batch_size: int = 500) -> RotationResult:
    """Safe to re-run and to run beside live traffic: each batch is locked row by row
    (the same lock a token refresh takes), so a refresh is never overwritten.

    A value no configured key decrypts (its key was dropped, the column is damaged) is left
    as it is, logged and listed in the result; the rotation goes on. An authorization with
    one gets `failure_reason` "undecryptable:authorization", which admin shows."""
    result = RotationResult()
    for model in ENCRYPTED_MODELS:
        columns = encrypted_columns(model)
        pks = list(model._default_manager.order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(pks), batch_size):
            batch = pks[start : start + batch_size]
            with transaction.atomic():
                list(model._default_manager.select_for_update().filter(pk__in=batch).only("pk"))
                for pk, raw_values in _raw_rows(model, columns, batch):
                    result.rows_seen += 1
                    updates = {}
                    for column, raw in zip(columns, raw_values, strict=True):
                        if raw is None:
                            continue
                        try:
                            plaintext, key_index = KEYRING.decrypt_with_index(bytes(raw))
                        except InvalidToken:
                            _report_undecryptable(model, pk, column, result)
                            continue
                        if key_index > 0:
                            updates[column] = KEYRING.encrypt(plaintext)
                    if updates:
                        _write_raw(model, pk, updates)
                        result.values_reencrypted += len(updates)
    return result


def _report_undecryptable(
    model: type[models.Model], pk: object, column: str, result: RotationResult
) -> None:
    where = Undecryptable(model._meta.label, str(pk), column)
    result.undecryptable.append(where)
    logger.error(
        "Key rotation: %s cannot be decrypted with any key of LARKAUTH_ENCRYPTION_KEYS; "
        "left as it is",
        where,
    )
    if model is UserAuthSession:
        UserAuthSession.objects.filter(pk=str(pk)).update(failure_reason=UNDECRYPTABLE_REASON)


def _raw_rows(
    model: type[models.Model], columns: list[str], pks: list[object]
) -> list[tuple[object, list[bytes | memoryview | None]]]:
    quote = connection.ops.quote_name
    pk_field = _pk_field(model)
    pk_column = str(pk_field.column)
    placeholders = ", ".join(["%s"] * len(pks))
    sql = (
        f"SELECT {quote(pk_column)}, {', '.join(quote(c) for c in columns)} "  # noqa: S608
        f"FROM {quote(model._meta.db_table)} WHERE {quote(pk_column)} IN ({placeholders})"
    )
    params = [pk_field.get_db_prep_value(pk, connection) for pk in pks]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(row[0], list(row[1:])) for row in cursor.fetchall()]


def _write_raw(model: type[models.Model], pk: object, updates: dict[str, bytes]) -> None:
    quote = connection.ops.quote_name
    pk_field = _pk_field(model)
    pk_column = str(pk_field.column)
    assignments = ", ".join(f"{quote(column)} = %s" for column in updates)
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET {assignments} "  # noqa: S608
        f"WHERE {quote(pk_column)} = %s"
    )
    pk_value = pk_field.get_db_prep_value(pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*updates.values(), pk_value])


def _pk_field(model: type[models.Model]) -> models.Field:
    assert model._meta.pk is not None
    return model._meta.pk
