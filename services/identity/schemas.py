"""Schemas of the identity API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class TokenRequestSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))
    otp = fields.String(load_default=None, load_only=True, validate=validate.Length(max=32))


class TokenSchema(Schema):
    token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)


class GrantSchema(Schema):
    role = fields.String(required=True)
    department = fields.String(required=True)


class MeSchema(Schema):
    user_id = fields.Integer(required=True)
    username = fields.String(required=True)
    display_name = fields.String(required=True)
    grants = fields.List(fields.Nested(GrantSchema), required=True)


class StaffMemberSchema(Schema):
    username = fields.String(required=True)
    display_name = fields.String(required=True)
    roles = fields.List(fields.String(), required=True)


class DepartmentStaffSchema(Schema):
    department = fields.String(required=True)
    name = fields.String(required=True)
    staff = fields.List(fields.Nested(StaffMemberSchema), required=True)
