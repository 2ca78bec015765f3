"""One handler per event type: `handle(app, event) -> answer`. Each is a thin adapter over
`sessions_app.services`, called by the dispatcher inside the event's dedupe transaction."""
