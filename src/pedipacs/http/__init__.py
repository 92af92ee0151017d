"""What the HTTP doors share: authentication of every request and the permission dependency."""
